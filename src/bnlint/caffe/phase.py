"""Caffe's phases, with the numbers its schema gives them (caffe.Phase)."""

from enum import IntEnum


class Phase(IntEnum):
    TRAIN = 0
    TEST = 1

    @classmethod
    def parse(cls, text: str) -> "Phase":
        return cls[text.upper()]
