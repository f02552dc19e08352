from multiprocessing import Process, Value, Array

def fun(n, a):
  n.value = 2.5
  a[0] = 5

if __name__ == '__main__':
  num = Value('d', 0.0)
  arr = Array('i', range(10))
  print("子进程修改前num:", num.value)
  print("子进程修改前arr:", arr[:])

  ps = Process(target=fun, args=(num, arr))
  ps.start()
  ps.join()

  print("子进程修改后num:", num.value)
  print("子进程修改后arr:", arr[:])
