import multiprocessing

def worker(barrier, i):
    print("worker", i, "before the barrier")
    if barrier.wait() == 0:
        print("worker", i, "is the leader")
    print("worker", i, "after the barrier")

if __name__ == '__main__':
    barrier = multiprocessing.Barrier(3)
    ps = [multiprocessing.Process(target=worker, args=(barrier, i)) for i in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
