import os
from multiprocessing import Process

def fun_1(str):
    print("子进程id:", os.getpid(), str)

def main():
    p1 = Process(target=fun_1, args=('this is process 1',))
    p2 = Process(target=fun_1, args=('this is process 2',))
    p3 = Process(target=fun_1, args=('this is process 3',))

    p1.start()
    p2.start()
    p3.start()
    print('主进程id:', {os.getpid()})

if __name__ == '__main__':
    main()
