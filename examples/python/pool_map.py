# From the seed tutorial: the square sum of numbers, in chunks, over a pool.
import multiprocessing

def square_sum(numbers):
    return sum(x ** 2 for x in numbers)

if __name__ == "__main__":
    numbers = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    num_processes = 4
    pool = multiprocessing.Pool(processes=num_processes)
    chunk_size = len(numbers) // num_processes
    chunks = [numbers[i:i+chunk_size] for i in range(0, len(numbers), chunk_size)]
    results = pool.map(square_sum, chunks)
    total_sum = sum(results)
    print("Total square sum:", total_sum)
    pool.close()
    pool.join()
