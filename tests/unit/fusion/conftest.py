"""Fixtures shared by the fusion unit tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def encoder():
    from classifier.fusion.encoder import TextEncoder

    torch.set_num_threads(2)
    return TextEncoder(max_tokens=16)
