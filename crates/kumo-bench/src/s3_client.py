"""The client of `kumo-bench s3`: boto3 against Kumo's S3 endpoint, one operation per run.

    python s3_client.py mb BUCKET
    python s3_client.py put-large BUCKET KEY SOURCE_FILE PART_BYTES CONCURRENCY
    python s3_client.py get-large BUCKET KEY SIZE PART_BYTES CONCURRENCY
    python s3_client.py put-small BUCKET PREFIX COUNT SIZE THREADS
    python s3_client.py get-small BUCKET PREFIX COUNT SIZE THREADS

Environment: S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. Prints one JSON line:
{"secs": wall seconds of the transfers only, "cpu": this process's CPU seconds in them, "bytes": …}.
Client creation, data generation and imports are outside the timed part. Large objects go through
s3transfer's classic manager (multipart PUT, ranged GETs of PART_BYTES in parallel) with the
defaults users get (boto3 adds a CRC32 checksum to every upload); a GET's body is counted and
dropped, not written to disk. Small objects: one client shared by a pool of THREADS threads; the
body of every GET is compared with what was PUT.
"""
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


def client(connections):
    config = Config(retries={"max_attempts": 1}, max_pool_connections=max(connections, 10))
    return boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1", config=config)


def transfer_config(part, concurrency):
    return TransferConfig(
        multipart_threshold=part,
        multipart_chunksize=part,
        max_concurrency=concurrency,
        use_threads=True,
        preferred_transfer_client="classic",
    )


class Sink:
    """A seekable file object that counts what is written to it and keeps nothing."""

    def __init__(self):
        self.bytes = 0
        self.pos = 0

    def write(self, b):
        self.bytes += len(b)
        self.pos += len(b)
        return len(b)

    def seek(self, offset, whence=0):
        self.pos = offset
        return offset

    def tell(self):
        return self.pos

    def seekable(self):
        return True

    def writable(self):
        return True


def small_body(i, size):
    block = hashlib.sha256(str(i).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def timed(f):
    wall, cpu = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main():
    op, bucket = sys.argv[1], sys.argv[2]
    if op == "mb":
        client(1).create_bucket(Bucket=bucket)
        print(json.dumps({"secs": 0, "cpu": 0, "bytes": 0}))
        return
    if op == "put-large":
        key, source, part, conc = sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
        s3 = client(conc)
        cfg = transfer_config(part, conc)
        _, secs, cpu = timed(lambda: s3.upload_file(source, bucket, key, Config=cfg))
        n = os.path.getsize(source)
    elif op == "get-large":
        key, size, part, conc = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        s3 = client(conc)
        cfg = transfer_config(part, conc)
        sink = Sink()
        _, secs, cpu = timed(lambda: s3.download_fileobj(bucket, key, sink, Config=cfg))
        n = sink.bytes
        if n != size:
            sys.exit(f"GET {key}: {n} bytes, wanted {size}")
    elif op in ("put-small", "get-small"):
        prefix, count, size, threads = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        s3 = client(threads)
        bodies = [small_body(i, size) for i in range(count)]
        keys = [f"{prefix}/{i:05}" for i in range(count)]

        def put(i):
            s3.put_object(Bucket=bucket, Key=keys[i], Body=bodies[i])

        def get(i):
            got = s3.get_object(Bucket=bucket, Key=keys[i])["Body"].read()
            if got != bodies[i]:
                raise RuntimeError(f"GET {keys[i]}: {len(got)} bytes that are not what was PUT")

        def all_of(f):
            with ThreadPoolExecutor(threads) as pool:
                for _ in pool.map(f, range(count)):
                    pass

        _, secs, cpu = timed(lambda: all_of(put if op == "put-small" else get))
        n = count * size
    else:
        sys.exit(f"unknown operation {op}")
    print(json.dumps({"secs": secs, "cpu": cpu, "bytes": n}))


if __name__ == "__main__":
    main()
