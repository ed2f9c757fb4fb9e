"""metrics.jsonl keeps the steps up to a resumed one; TensorBoard event files hold the same scalars."""

import json

from pipeline.train.metrics import MetricsLog


def test_resumed_log_drops_later_steps_and_tensorboard_gets_the_scalars(tmp_path):
    log = MetricsLog(tmp_path, 0, ["tensorboard"])
    for step in range(1, 6):
        log.write({"step": step, "loss": 1.0 / step, "epoch": 0})
    log.close()
    resumed = MetricsLog(tmp_path, 3, [])  # a checkpoint at step 3: steps 4 and 5 will be logged again
    resumed.write({"step": 4, "loss": 0.3, "epoch": 0})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["loss"] == 0.3

    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    loss = [(step, round(value, 4)) for step, tag, value in _scalars(events) if tag == "loss"]
    assert loss == [(s, round(1.0 / s, 4)) for s in range(1, 6)]


def _scalars(path):
    """(step, tag, value) of every scalar in a TFRecord event file (u64 length, u32 crc, data, u32 crc)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    data, at = path.read_bytes(), 0
    while at < len(data):
        (n,) = struct.unpack("<Q", data[at:at + 8])
        event = Event.FromString(data[at + 12:at + 12 + n])
        at += 12 + n + 4
        for v in event.summary.value:
            yield event.step, v.tag, v.simple_value
