"""A child reports through a Pipe (seed 001)."""
import multiprocessing
import os
import time

def watch(owner, conn):
    print(owner, "(", os.getpid(), ") is looking at the watch", sep="")
    now = time.asctime(time.localtime())
    conn.send(now)

def main():
    print("I(", os.getpid(), ") am asking the time", sep="")
    conn_for_me, conn_for_mike = multiprocessing.Pipe()
    p = multiprocessing.Process(target=watch, args=("Mike", conn_for_mike))
    p.start()
    p.join()
    print("I see Mike's watch says:", conn_for_me.recv())

if __name__ == "__main__":
    main()
