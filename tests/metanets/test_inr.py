import pytest
import torch

import graphs
from datasets.zoo.inr import make_coordinates
from datasets.zoo.models import Siren
from metanets.inr import SirenRenderer, edit_image


def test_renderer_matches_the_siren_module():
    torch.manual_seed(0)
    nets = [Siren(hidden=12, depth=3) for _ in range(3)]
    layout = graphs.trace(nets[0], make_coordinates(8, 8))
    rows = torch.stack([graphs.flatten_state_dict(n, layout) for n in nets])
    imgs = SirenRenderer(layout, (8, 8))(rows)
    with torch.no_grad():
        ref = torch.stack([n(make_coordinates(8, 8))[:, 0].reshape(8, 8) for n in nets])
    assert torch.allclose(imgs, ref, atol=1e-5, rtol=0)  # float32: same ops in another order


def test_renderer_rejects_non_chain_layouts():
    layout = graphs.trace(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), torch.randn(1, 1, 5, 5))
    with pytest.raises(ValueError, match="chain of linear layers"):
        SirenRenderer(layout, (8, 8))


def test_edits():
    img = torch.zeros(1, 5, 5)
    img[0, 2, 2] = 1
    assert edit_image("dilate", img).sum() == 9
    assert torch.allclose(edit_image("contrast", torch.full((1, 2, 2), 0.6)), torch.full((1, 2, 2), 0.65))
    with pytest.raises(ValueError, match="unknown edit"):
        edit_image("blur", img)
