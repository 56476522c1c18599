"""Generation against an explicit dense R, gradcheck, determinism and the generation cache."""
import pytest
import torch

from helpers import dense_matrix, make_spec
from modelring.generate import RingGenerator, build_wiring, generate


def generate_flat(ring, spec, wiring):
    return torch.cat([w.reshape(-1) for w in generate(ring, spec, wiring)])

SHAPES = [[6, 4, 3, 3], [5, 7], [3, 2, 2, 2, 2], [9]]
VARIANTS = [dict(block=1), dict(block=16), dict(block=5), dict(block=16, permute=False),
            dict(block=4, reflect=False), dict(sampling="independent"), dict(block=16, wiring="recompute")]


@pytest.mark.parametrize("size", [17, 100, 400])
@pytest.mark.parametrize("options", VARIANTS, ids=str)
def test_generation_and_gradient_equal_dense_reference(size, options):
    spec = make_spec(SHAPES, size, seed=3, scales=[0.5, 2.0, 1.0, 0.1], **options)
    ring = torch.randn(size, dtype=torch.float64, requires_grad=True)
    flat = generate_flat(ring, spec, build_wiring(spec, ring.device, ring.dtype))
    R = dense_matrix(spec)
    torch.testing.assert_close(flat, R @ ring.detach(), rtol=0, atol=0)
    upstream = torch.randn(spec.total, dtype=torch.float64)
    flat.backward(upstream)
    torch.testing.assert_close(ring.grad, R.T @ upstream, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", VARIANTS, ids=str)
def test_gradcheck_float64(options):
    spec = make_spec([[4, 3, 3], [7, 2]], 11, seed=1, scales=[0.7, 1.3], **options)
    wiring = build_wiring(spec, torch.device("cpu"), torch.float64)
    ring = torch.randn(11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r: generate_flat(r, spec, wiring), (ring,))


@pytest.mark.parametrize("options", [dict(block=1), dict(block=16), dict(sampling="independent")], ids=str)
def test_backward_is_bitwise_deterministic(options):
    spec = make_spec([[64, 64, 3, 3], [100, 300]], 5000, seed=0, scales=[0.03, 0.05], **options)
    wiring = build_wiring(spec, torch.device("cpu"), torch.float32)
    upstream = torch.randn(spec.total)
    grads = []
    for _ in range(3):
        ring = torch.randn(5000, generator=torch.Generator().manual_seed(0), requires_grad=True)
        generate_flat(ring, spec, wiring).backward(upstream)
        grads.append(ring.grad)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_generator_splits_into_shaped_weights():
    spec = make_spec(SHAPES, 50)
    weights = RingGenerator(spec).weights(torch.randn(50))
    assert [tuple(w.shape) for w in weights] == [tuple(s) for s in SHAPES]


def test_cache_no_regeneration_under_no_grad_until_ring_changes():
    gen = RingGenerator(make_spec(SHAPES, 50))
    ring = torch.nn.Parameter(torch.randn(50))
    with torch.no_grad():
        first = gen.weights(ring)
        assert gen.weights(ring) is first
        ring.add_(1.0)  # an optimizer step bumps the version counter
        second = gen.weights(ring)
    assert second is not first
    assert not torch.equal(first[0], second[0])


def test_cache_is_dropped_after_backward_so_accumulation_works():
    gen = RingGenerator(make_spec(SHAPES, 50))
    ring = torch.nn.Parameter(torch.randn(50))
    first = gen.weights(ring)
    assert gen.weights(ring) is first  # the same forward may use the weights twice
    sum(w.sum() for w in first).backward()
    second = gen.weights(ring)
    assert second is not first
    sum(w.sum() for w in second).backward()  # would fail if the freed graph were reused
    single = torch.nn.Parameter(ring.detach().clone())
    sum(w.sum() for w in RingGenerator(make_spec(SHAPES, 50)).weights(single)).backward()
    torch.testing.assert_close(ring.grad, 2 * single.grad)


def test_cached_wiring_bytes_per_virtual_weight():
    spec = make_spec([[256, 256, 3, 3]], 10_000, block=16)
    gen = RingGenerator(spec)
    gen.weights(torch.randn(10_000))
    assert gen.wiring_bytes() / spec.total <= 4.5 + 1e-9
    recompute = RingGenerator(make_spec([[256, 256, 3, 3]], 10_000, wiring="recompute"))
    recompute.weights(torch.randn(10_000))
    assert recompute.wiring_bytes() == 0
