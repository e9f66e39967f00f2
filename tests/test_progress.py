import os
import threading

from bert4rec.progress import bar, tqdm


def test_bars_start_no_thread_a_fork_could_inherit_mid_lock():
    before = set(threading.enumerate())
    with bar(range(3), enabled=True) as shown:
        for _ in shown:
            pass
    assert set(threading.enumerate()) == before  # tqdm's monitor would be a new thread
    pid = os.fork()
    if pid == 0:  # the child makes a bar of its own, which takes tqdm's lock
        with bar(range(3)) as shown:
            list(shown)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0


def test_a_process_that_dies_holding_the_bars_lock_blocks_no_other():
    pid = os.fork()
    if pid == 0:
        tqdm.get_lock().acquire()
        os._exit(0)  # never released
    assert os.waitpid(pid, 0)[1] == 0
    lock = tqdm.get_lock()
    assert lock.acquire(timeout=5)
    lock.release()
