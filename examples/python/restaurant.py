import multiprocessing
import time
def dining(s, i):
  s.acquire()
  print(multiprocessing.current_process().name + " acquire")
  time.sleep(i)
  print(multiprocessing.current_process().name + " release")
  s.release()

if __name__ == "__main__":
  # 设置限制最多10个进程同时访问共享资源
  s = multiprocessing.Semaphore(10)
  for i in range(20):
    p = multiprocessing.Process(target = dining, args = (s, i * 2))
    p.start()
