"""The script a user would write instead of abatch: read NDJSON, POST batches with aiohttp at
bounded concurrency, write one JSON line per result. The benchmark times it against abatch.

usage: asyncio_client.py URL INPUT BATCH_SIZE CONCURRENCY
"""

import asyncio
import json
import sys

import aiohttp


async def main(url, path, batch_size, concurrency):
    queue = asyncio.Queue(maxsize=concurrency)
    out = sys.stdout

    async def worker(session):
        while True:
            batch = await queue.get()
            if batch is None:
                return
            async with session.post(url, json=batch) as response:
                response.raise_for_status()
                results = await response.json()
            if len(results) != len(batch):
                raise RuntimeError(f"expected {len(batch)} results, got {len(results)}")
            out.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in results))

    async with aiohttp.ClientSession() as session:
        workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        batch = []
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    batch.append(json.loads(line))
                if len(batch) == batch_size:
                    await queue.put(batch)
                    batch = []
        if batch:
            await queue.put(batch)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    out.flush()


if __name__ == "__main__":
    url, path, size, concurrency = sys.argv[1:5]
    asyncio.run(main(url, path, int(size), int(concurrency)))
