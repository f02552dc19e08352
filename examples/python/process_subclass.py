import os
from multiprocessing import Process

class subProcess(Process):
    def __init__(self, str):
        super().__init__()
        self.str = str
    def run(self):
        print("子进程id:",os.getpid(),self.str)

def main():
    p1 = subProcess('this is process 1')
    p2 = subProcess('this is process 2')
    p3 = subProcess('this is process 3')

    # start函数会调用run执行
    p1.start()
    p2.start()
    p3.start()
    print("主进程id:", os.getpid())

if __name__ == '__main__':
    main()
