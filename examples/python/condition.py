import multiprocessing

def producer(cond, items):
    for i in range(10):
        with cond:
            items.value += 1
            cond.notify()

def consumer(cond, items):
    taken = 0
    while taken < 10:
        with cond:
            cond.wait_for(lambda: items.value > 0)
            items.value -= 1
            taken += 1
    print("consumer took", taken)

if __name__ == '__main__':
    cond = multiprocessing.Condition()
    items = multiprocessing.Value('i', 0, lock=False)
    c = multiprocessing.Process(target=consumer, args=(cond, items))
    p = multiprocessing.Process(target=producer, args=(cond, items))
    c.start(); p.start()
    c.join(); p.join()
