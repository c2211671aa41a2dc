"""The step benchmark compares like with like: the bare loop starts where the trainer does."""

import math

from benchmarks.bench_step import build_models, compare_steps, full_length_rows, main


def test_bare_loop_and_trainer_see_the_same_loss_from_the_same_init():
    trainer_model, bare_model, tokenizer = build_models("tiny-llama")
    data = full_length_rows("tiny-llama", tokenizer, seq_len=16, min_rows=4)
    assert data["input_ids"].shape[1] == 16 and bool(data["attention_mask"].all())

    res = compare_steps(trainer_model=trainer_model, bare_model=bare_model, data=data, batch=4,
                        steps=1, warmup=1)

    assert len(res.trainer_s) == len(res.bare_s) == len(res.trainer_cpu) == 2
    assert res.trainer_loss[0] == res.bare_loss[0]  # same weights, same rows: the same number
    assert all(math.isfinite(x) for x in res.trainer_loss + res.bare_loss)
    assert res.trainer > 0 and res.bare > 0


def test_script_prints_one_row_per_shape(capsys):
    assert main(["--model", "tiny-llama", "--shapes", "4x16,2x8", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "bare / trainer" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:2] in (["4", "16"], ["2", "8"])]
    assert len(rows) == 2
