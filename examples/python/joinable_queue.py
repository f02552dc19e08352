"""JoinableQueue workers: the producer joins until every task is done."""
from multiprocessing import JoinableQueue, Process

def worker(q):
    while True:
        item = q.get()
        print("worker did", item)
        q.task_done()

if __name__ == '__main__':
    q = JoinableQueue()
    for _ in range(2):
        Process(target=worker, args=(q,), daemon=True).start()
    for item in range(10):
        q.put(item)
    q.join()
    print("all tasks done")
