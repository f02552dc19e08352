"""The sensor pipeline (seed 000): image, lidar and anchor processes fill a
Manager dict; the parent hands each frame's results to a detector process
through a Queue.
"""
from multiprocessing import Process, Manager, Queue

def img_process(index, d, key):
    d[key] = index + 10

def lidar_process(index, d, key):
    d[key] = index + 20

def anchor_process(index, d, key):
    d[key] = index + 30

def detect(queue, frames):
    for _ in range(frames):
        m = queue.get()
        print('frame', m['frame'], 'results:', m['image'], m['lidar'], m['anchor'])

if __name__ == '__main__':
    frames = 3
    q = Queue()
    ps_detect = Process(target=detect, args=(q, frames))
    ps_detect.start()
    manager = Manager()
    for frame in range(frames):
        m = manager.dict()
        ps = [Process(target=f, args=(frame, m, k)) for f, k in
              [(img_process, "image"), (lidar_process, "lidar"), (anchor_process, "anchor")]]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        m['frame'] = frame
        q.put(dict(m))
    ps_detect.join()
