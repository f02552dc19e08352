"""Pipe producer/consumer: send 0..9, close, the consumer sees EOF (seed 000)."""
from multiprocessing import Process, Pipe

def consumer(p, name):
    left, right = p
    left.close()
    while True:
        try:
            baozi = right.recv()
            print('%s got bun %s' % (name, baozi))
        except EOFError:
            right.close()
            break

def producer(seq, p):
    left, right = p
    right.close()
    for i in seq:
        left.send(i)
    left.close()

if __name__ == '__main__':
    left, right = Pipe()
    c1 = Process(target=consumer, args=((left, right), 'c1'))
    c1.start()
    producer(range(10), (left, right))
    c1.join()
    print('main process')
