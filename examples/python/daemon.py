import multiprocessing
import time

def heartbeat():
    while True:
        print("daemon: still here")
        time.sleep(0.1)

if __name__ == '__main__':
    d = multiprocessing.Process(name='daemon', target=heartbeat)
    d.daemon = True
    d.start()
    time.sleep(0.3)
    print("main: exiting; the daemon dies with me")
