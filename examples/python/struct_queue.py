"""Records through a Queue: a namedtuple per reading."""
from collections import namedtuple
from multiprocessing import Process, Queue

Reading = namedtuple('Reading', ['sensor', 'seq', 'value'])

def sensor(q, sensor_id):
    for i in range(5):
        q.put(Reading(sensor_id, i, i * 0.5))

if __name__ == '__main__':
    q = Queue()
    ps = [Process(target=sensor, args=(q, s)) for s in range(2)]
    for p in ps:
        p.start()
    readings = [q.get() for _ in range(10)]
    for p in ps:
        p.join()
    print("readings", len(readings), "sum", sum(r.value for r in readings))
