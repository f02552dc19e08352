"""The spawn start method with a Queue (seed 003)."""
import multiprocessing
import os

def foo(q):
    print('started a new process: (%s)' % os.getpid())
    q.put('Python')

if __name__ == '__main__':
    multiprocessing.set_start_method('spawn')
    q = multiprocessing.Queue()
    mp = multiprocessing.Process(target=foo, args=(q,))
    mp.start()
    print("got", q.get())
    mp.join()
