from multiprocessing import Process, Value
import time

x = 100

def fun(shared):
    global x
    x = 0
    shared.value = 0
    print('子进程x:%s' % x)

if __name__ == '__main__':
    shared = Value('i', 100)
    p = Process(target=fun, args=(shared,))
    p.start()
    p.join()
    print('主进程x:%s, shared:%s' % (x, shared.value))
