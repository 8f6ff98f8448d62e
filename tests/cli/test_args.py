"""Shared CLI options: the RWE settings the flags build."""

from __future__ import annotations

import argparse

import torch

from rwenas.cli.args import add_rwe_args, rwe_config


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_rwe_args(p)
    return p.parse_args(list(argv))


def test_rwe_config_takes_the_gpu_inference_batch_only_where_none_is_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rwe_config(parse()).inference_batch == 128
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert rwe_config(parse()).inference_batch == 1024
    assert rwe_config(parse("--device", "cpu")).inference_batch == 128
    assert rwe_config(parse(), {"inference_batch": 64}).inference_batch == 64
    assert rwe_config(parse("--epochs", "3")).epochs == 3
