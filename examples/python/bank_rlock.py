import multiprocessing

def draw(balance, lock, amount):
    with lock:
        with lock:  # an RLock may be taken again by its holder
            if balance.value >= amount:
                balance.value -= amount
                print(multiprocessing.current_process().name, "drew", amount)
            else:
                print(multiprocessing.current_process().name, "refused")

if __name__ == '__main__':
    lock = multiprocessing.RLock()
    balance = multiprocessing.Value('i', 900)
    ps = [multiprocessing.Process(name=n, target=draw, args=(balance, lock, 800)) for n in "ABC"]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print("balance", balance.value)
