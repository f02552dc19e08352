# From the seed tutorial: a pool "downloading" files (starmap over (url,
# filename) pairs) and then "processing" them (map over file names). The
# "server" is a directory of files the program creates, so it runs offline.
import multiprocessing
import os
import shutil
import tempfile

def download_file(url, filename):
    with open(url, 'rb') as response, open(filename, 'wb') as f:
        f.write(response.read())
    print(f"Downloaded {filename} from {url}")

def process_file(filename):
    with open(filename) as f:
        text = f.read()
    with open(filename + ".processed", "w") as f:
        f.write(text.upper())
    print(f"Processed {filename}")
    return len(text)

if __name__ == "__main__":
    tmp = tempfile.mkdtemp()
    for i in range(1, 4):
        with open(os.path.join(tmp, f"remote{i}.txt"), "w") as f:
            f.write(f"contents of file {i}\n" * i)
    urls = [(os.path.join(tmp, f"remote{i}.txt"), os.path.join(tmp, f"file{i}.txt")) for i in range(1, 4)]
    pool = multiprocessing.Pool(processes=len(urls))
    pool.starmap(download_file, urls)
    sizes = pool.map(process_file, [name for _, name in urls])
    print("processed bytes:", sum(sizes))
    pool.close()
    pool.join()
    shutil.rmtree(tmp)
