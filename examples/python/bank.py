from multiprocessing import Process, Lock, Value
import time

# 银行取钱,本金100元,每次取1元,取100次
def get_money(num, lock):
    lock.acquire()
    for i in range(100):
        num.value -= 1
        print(num.value)
        time.sleep(0.01)
    lock.release()

# 银行存钱,本金100元,每次存1元,存100次
def put_money(num, lock):
    lock.acquire()
    for i in range(100):
        num.value += 1
        print(num.value)
        time.sleep(0.01)
    lock.release()

if __name__ == '__main__':
    # 共享数据num表示100软民比
    num = Value('i', 100)
    l = Lock()
    ps_get = Process(target=get_money, args=(num, l))
    ps_get.start()
    ps_put = Process(target=put_money, args=(num, l))
    ps_put.start()
    ps_get.join()
    ps_put.join()
    print(num.value)
