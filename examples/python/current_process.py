import multiprocessing
import os

def whoami():
    p = multiprocessing.current_process()
    print("child:", p.name, p.pid == os.getpid())

if __name__ == '__main__':
    print("main:", multiprocessing.current_process().name)
    ps = [multiprocessing.Process(name="worker-%d" % i, target=whoami) for i in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
        print("joined", p.name, p.exitcode)
