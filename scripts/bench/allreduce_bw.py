"""All-reduce bandwidth of c10d's Gloo backend between 2 processes on 127.0.0.1 (the engine the addon's DDP uses:
libtorch's own ProcessGroupGloo). argv: JSON {"sizes_mb": [...], "repeats": n}. Prints one JSON line:
per size the median seconds, algorithm bandwidth (bytes / time) and bus bandwidth (2 (n-1)/n x that, nccl-tests' measure)."""
import json, os, socket, statistics, sys, time
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, world, port, spec, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    res = []
    for mb in spec["sizes_mb"]:
        t = torch.ones(int(mb * 2**20 / 4), dtype=torch.float32)
        dist.all_reduce(t)  # warm-up: connections, buffers
        times = []
        for _ in range(spec["repeats"]):
            dist.barrier()
            s = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - s)
        sec = statistics.median(times)
        algbw = mb * 2**20 / sec
        res.append({"mb": mb, "seconds": sec, "algbw_gb_s": algbw / 1e9, "busbw_gb_s": algbw * 2 * (world - 1) / world / 1e9})
    if rank == 0:
        out.put(res)
    dist.destroy_process_group()


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, 2, port, spec, q)) for r in range(2)]
    for p in procs:
        p.start()
    res = q.get(timeout=600)
    for p in procs:
        p.join()
    print(json.dumps({"world_size": 2, "backend": "gloo", "transport": "tcp 127.0.0.1", "torch": torch.__version__, "results": res}))
