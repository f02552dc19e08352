"""Two children return values through a Queue (seed 002)."""
import multiprocessing

def job(q, a):
    q.put(a * a)

if __name__ == '__main__':
    q = multiprocessing.Queue()
    p1 = multiprocessing.Process(target=job, args=(q, 1))
    p2 = multiprocessing.Process(target=job, args=(q, 2))
    p1.start()
    p2.start()
    p1.join()
    p2.join()
    res1 = q.get()
    res2 = q.get()
    print("results", sorted([res1, res2]))
