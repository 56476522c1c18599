"""Generation against an explicit dense R, gradcheck, determinism and the generation cache."""
import copy

import pytest
import torch

from helpers import dense_matrix, make_spec, sparse_matrix
from modelring import kernels
from modelring.generate import RingGenerator, build_wiring, generate


def generate_flat(ring, spec, wiring):
    return torch.cat([w.reshape(-1) for w in generate(ring, spec, wiring)])

SHAPES = [[6, 4, 3, 3], [5, 7], [3, 2, 2, 2, 2], [9]]
VARIANTS = [dict(block=1), dict(block=1, permute=False), dict(block=1, reflect=False),
            dict(block=1, wiring="recompute"), dict(block=1, wiring_version=1), dict(block=16), dict(block=5),
            dict(block=16, permute=False), dict(block=4, reflect=False), dict(sampling="independent"), dict(block=16, wiring="recompute")]
# the element-wise layout at sizes that exercise many chunks, a short last chunk, chunks straddling layers,
# rings smaller than a chunk and rings larger than the weights
CHUNKY = [[64, 64, 3, 3], [100, 300], [7], [3000, 3], [9000]]


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


@pytest.mark.parametrize("size", [5, 512, 5000, 40_000, 200_000])
@pytest.mark.parametrize("kernel", ["compiled", "torch"])
def test_element_wise_generation_and_gradient_equal_dense_reference(size, kernel, monkeypatch):
    if kernel == "torch":
        monkeypatch.setenv("MODELRING_KERNEL", "torch")
    elif not kernels.usable(torch.zeros(1)):
        pytest.fail("the compiled kernel is unavailable on this machine (no C++ compiler?)")
    spec = make_spec(CHUNKY, size, seed=9, scales=[0.5, 1.0, 2.0, 1.0, 0.25])
    assert spec.element_wise
    ring = torch.randn(size, dtype=torch.float64, requires_grad=True)
    flat = generate_flat(ring, spec, build_wiring(spec, ring.device, ring.dtype))
    R = sparse_matrix(spec)
    torch.testing.assert_close(flat, R @ ring.detach(), rtol=0, atol=0)
    upstream = torch.randn(spec.total, dtype=torch.float64)
    flat.backward(upstream)
    torch.testing.assert_close(ring.grad, R.t() @ upstream, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_kernel_and_torch_path_are_bitwise_equal(dtype, monkeypatch):
    spec = make_spec(CHUNKY, 40_000, seed=2, scales=[0.5, 1.0, 3.0, 1.0, 0.1])
    upstream = [torch.randn(s.shape, dtype=dtype) for s in spec.segments]
    results = []
    for kernel in ["compiled", "torch"]:
        monkeypatch.setenv("MODELRING_KERNEL", kernel)
        ring = torch.randn(40_000, dtype=dtype, generator=torch.Generator().manual_seed(0), requires_grad=True)
        weights = generate(ring, spec, build_wiring(spec, ring.device, dtype))
        torch.autograd.backward(weights, upstream)
        results.append(([w.detach() for w in weights], ring.grad))
    (w_a, g_a), (w_b, g_b) = results
    assert all(torch.equal(a, b) for a, b in zip(w_a, w_b))
    assert torch.equal(g_a, g_b)


def test_channels_last_gradients_reach_the_ring_in_logical_order():
    spec = make_spec([[8, 4, 3, 3], [6, 8, 3, 3]], 100, seed=1)
    ring = torch.randn(100, dtype=torch.float64, requires_grad=True)
    weights = generate(ring, spec, build_wiring(spec, ring.device, ring.dtype))
    upstream = [torch.randn(s.shape, dtype=torch.float64).to(memory_format=torch.channels_last)
                for s in spec.segments]
    torch.autograd.backward(weights, upstream)
    expected = dense_matrix(spec).T @ torch.cat([u.reshape(-1) for u in upstream])
    torch.testing.assert_close(ring.grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", VARIANTS, ids=str)
def test_gradcheck_float64(options):
    spec = make_spec([[4, 3, 3], [7, 2]], 11, seed=1, scales=[0.7, 1.3], **options)
    wiring = build_wiring(spec, torch.device("cpu"), torch.float64)
    ring = torch.randn(11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r: generate_flat(r, spec, wiring), (ring,))


def test_element_wise_backward_is_bitwise_identical_for_one_and_two_threads():
    spec = make_spec([[64, 64, 3, 3], [100, 300], [333]], 5000, seed=0, scales=[0.03, 0.05, 1.0])
    wiring = build_wiring(spec, torch.device("cpu"), torch.float32)
    upstream = torch.randn(spec.total)
    grads, threads = [], torch.get_num_threads()
    try:
        for count in [1, 2, 1, 2]:
            torch.set_num_threads(count)
            ring = torch.randn(5000, generator=torch.Generator().manual_seed(0), requires_grad=True)
            generate_flat(ring, spec, wiring).backward(upstream)
            grads.append(ring.grad)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


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
    element = RingGenerator(make_spec([[256, 256, 3, 3]], 10_000))
    ring = torch.randn(10_000, requires_grad=True)
    sum(w.sum() for w in element.weights(ring)).backward()  # the backward builds its chunk tables too
    assert element.wiring_bytes() + element.workspace_bytes() <= 4.075 * spec.total  # 4 B + 36 B per 512
    recompute = RingGenerator(make_spec([[256, 256, 3, 3]], 10_000, wiring="recompute"))
    recompute.weights(torch.randn(10_000))
    assert recompute.wiring_bytes() == 0


@pytest.mark.parametrize("permute, reflect", [(True, True), (True, False), (False, True), (False, False)])
def test_compiled_tables_equal_the_torch_tables(permute, reflect, monkeypatch):
    """The element-wise tables built by the compiled kernel are the plain-torch ones, bit for bit (tail included)."""
    from modelring.elementwise import build_element_wiring

    spec = make_spec(CHUNKY, 5000, seed=4, permute=permute, reflect=reflect)
    assert spec.total % 512 and spec.total > 20 * 512
    tables = []
    for kernel in ["compiled", "torch"]:
        monkeypatch.setenv("MODELRING_KERNEL", kernel)
        wiring = build_element_wiring(spec, torch.device("cpu"))
        tables.append((wiring.fwd, wiring.inv))
    assert torch.equal(tables[0][0], tables[1][0]) and torch.equal(tables[0][1], tables[1][1])


@pytest.mark.parametrize("permute, reflect", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recompute_holds_no_table_between_forward_and_backward_and_matches_the_cache(permute, reflect, dtype):
    """Recompute mode builds the forward's table and drops it; its backward computes the inverse codes tile by tile
    in the kernel (or builds the table inside the backward without it): the same weights and gradients, bitwise."""
    cached, recompute = (make_spec(CHUNKY, 5000, seed=5, wiring=mode, permute=permute, reflect=reflect)
                         for mode in ("cached", "recompute"))
    assert cached.total % 512  # a short last chunk, whose tile the kernel reads from its own small table
    results = []
    for spec in (cached, recompute):
        ring = torch.randn(5000, generator=torch.Generator().manual_seed(1), dtype=dtype, requires_grad=True)
        weights = RingGenerator(spec).weights(ring)
        if spec.wiring == "recompute":
            waiting = weights[0].grad_fn.wiring  # what autograd keeps until the backward
            assert waiting.fwd is None and waiting.inv is None and waiting.base.numel() < spec.total // 100
        torch.autograd.backward(weights, [torch.ones_like(w) for w in weights])
        results.append(([w.detach() for w in weights], ring.grad))
    assert all(torch.equal(a, b) for a, b in zip(results[0][0], results[1][0]))
    assert torch.equal(results[0][1], results[1][1])


def test_gradient_groups_close_at_the_minimum_size_or_eight_rings():
    from modelring.elementwise import GROUP_MIN_WEIGHTS, gradient_groups

    assert gradient_groups([0, 10, 30, 35, 80, 81], 5) == [(0, 5)]  # small layers: one node
    big = [0, GROUP_MIN_WEIGHTS, GROUP_MIN_WEIGHTS + 5, 3 * GROUP_MIN_WEIGHTS, 3 * GROUP_MIN_WEIGHTS + 1]
    assert gradient_groups(big, 100) == [(0, 1), (1, 3), (3, 4)]
    assert gradient_groups(big, GROUP_MIN_WEIGHTS // 4) == [(0, 3), (3, 4)]  # groups of >= 8 N = 2 M weights


GROUPED = [[64, 64, 3, 3], [100, 300], [7], [3000, 3], [9000], [50, 40], [1], [5000]]


@pytest.mark.parametrize("wiring", ["cached", "recompute"])
@pytest.mark.parametrize("kernel", ["compiled", "torch"])
def test_groups_of_layers_generate_and_differentiate_like_the_dense_reference(wiring, kernel, monkeypatch):
    """Several generation nodes per ring (groups of layers): the same weights, and a ring gradient equal to R^T g
    (each group sums its copies in ascending order, autograd adds the groups)."""
    from modelring import elementwise

    monkeypatch.setattr(elementwise, "GROUP_MIN_WEIGHTS", 0)
    monkeypatch.setattr(elementwise, "GROUP_RING_MULTIPLE", 0)
    monkeypatch.setenv("MODELRING_KERNEL", kernel)
    size = 3000
    spec = make_spec(GROUPED, size, seed=4, wiring=wiring, scales=[0.5, 1.0, 2.0, 1.0, 0.25, 3.0, 1.0, 0.5])
    groups = elementwise.gradient_groups([s.offset for s in spec.segments] + [spec.total], size)
    assert len(groups) == len(GROUPED) and spec.total % 512
    ring = torch.randn(size, dtype=torch.float64, requires_grad=True)
    weights = generate(ring, spec, build_wiring(spec, ring.device, ring.dtype))
    assert len({id(w.grad_fn) for w in weights}) == len(groups)
    R = sparse_matrix(spec)
    torch.testing.assert_close(torch.cat([w.reshape(-1) for w in weights]), R @ ring.detach(), rtol=0, atol=0)
    upstream = [torch.randn(s.shape, dtype=torch.float64) for s in spec.segments]
    torch.autograd.backward(weights, upstream)
    expected = R.t() @ torch.cat([u.reshape(-1) for u in upstream])
    torch.testing.assert_close(ring.grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grouped_backward_is_bitwise_the_same_for_kernel_torch_recompute_and_threads(dtype, monkeypatch):
    from modelring import elementwise

    monkeypatch.setattr(elementwise, "GROUP_MIN_WEIGHTS", 0)
    monkeypatch.setattr(elementwise, "GROUP_RING_MULTIPLE", 0)
    upstream = [torch.randn(s, dtype=dtype) for s in GROUPED]
    grads, threads = [], torch.get_num_threads()
    try:
        for kernel, wiring, count in [("compiled", "cached", 1), ("compiled", "cached", 2), ("torch", "cached", 2),
                                      ("compiled", "recompute", 2), ("torch", "recompute", 1)]:
            monkeypatch.setenv("MODELRING_KERNEL", kernel)
            torch.set_num_threads(count)
            spec = make_spec(GROUPED, 3000, seed=6, wiring=wiring, scales=[0.5, 1, 2, 1, 0.25, 3, 1, 0.5])
            ring = torch.randn(3000, dtype=dtype, generator=torch.Generator().manual_seed(0), requires_grad=True)
            torch.autograd.backward(list(RingGenerator(spec).weights(ring)), upstream)
            grads.append(ring.grad)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


@pytest.mark.skipif(not kernels.usable(torch.zeros(1)), reason="needs the compiled kernel")
@pytest.mark.parametrize("hashed", [False, True], ids=["table", "hashed"])
def test_backward_kernel_orders_the_tiles_skips_missing_gradients_and_fills_a_fresh_gradient(hashed):
    """The kernel's contract at its boundary: tiles listed in any order are summed in ascending order, a tile whose
    gradient address is 0 adds nothing, and ``fresh`` writes every entry of an uninitialised gradient (the blocks
    that no tile reaches become 0) with the bits of adding into zeros; against index_add_ tile by tile."""
    from modelring import wiring as wr
    from modelring.elementwise import _tail_inverse, build_element_wiring

    generator = torch.Generator().manual_seed(3)
    spec = make_spec([[40 * 512]], 3 * 4096 + 7, seed=2)  # 40 full chunks over 3 blocks of 4096 entries, wrapping
    wiring = build_element_wiring(spec, torch.device("cpu"))
    bits, width, n = wiring.bits, 1 << wiring.bits, spec.size
    gradient = torch.randn(40, width, generator=generator)
    slots = (wiring.start >> bits).to(torch.int32)  # slot -> chunk; chunk c lies on tile t with slots[t] == c
    used = torch.randperm(40, generator=generator)[:9].sort().values  # 9 tiles: some blocks get no term
    scale = torch.rand(9, generator=generator, dtype=torch.float64) + 0.5
    scale[0] = 1.0
    address = torch.tensor([gradient[int(slots[t])].data_ptr() for t in used], dtype=torch.int64)

    def run(tiles, src, scales, out, fresh):
        if hashed:
            kernels.backward_hashed(tiles, src, scales, spec.total, bits, 40,
                                    wr.chunk_round_keys(spec.key(wr.PURPOSE_PERMUTATION)), permute=spec.permute,
                                    reflect=spec.reflect, sign_key=spec.key(wr.PURPOSE_SIGNS),
                                    slot_chunk=wiring.start >> bits, tail=_tail_inverse(spec, 40, bits), out=out,
                                    fresh=fresh)
        else:
            kernels.backward(tiles, src, scales, wiring.inv, bits, out, fresh=fresh)
        return out

    expected = torch.zeros(n)
    for t, s in zip(used.tolist(), scale.tolist()):
        codes = wiring.inv[t * width:(t + 1) * width].to(torch.int32)
        values = gradient[int(slots[t])][codes & 0x7FFF]
        values = values if s == 1.0 else values * torch.tensor(s, dtype=torch.float32)
        values = torch.where(codes < 0, -values, values)
        expected.index_add_(0, torch.arange(t * width, (t + 1) * width) % n, values)
    assert torch.equal(run(used.to(torch.int32), address, scale, torch.zeros(n), False), expected)

    shuffle = torch.randperm(9, generator=generator)
    listed = torch.cat([used[shuffle], torch.tensor([int(t) for t in range(40) if t not in used.tolist()][:5])])
    src = torch.cat([address[shuffle], torch.zeros(5, dtype=torch.int64)])  # 0: no gradient, skipped
    scales = torch.cat([scale[shuffle], torch.full((5,), 7.0, dtype=torch.float64)])
    garbage = torch.full((n,), float("nan"))
    assert torch.equal(run(listed.to(torch.int32), src, scales, garbage, True), expected)
    untouched = expected == 0
    assert untouched.any() and torch.equal(garbage[untouched], torch.zeros(int(untouched.sum())))
    with pytest.raises(TypeError, match="int32"):
        run(listed.to(torch.int64), src, scales, torch.zeros(n), False)


def test_relays_reduce_each_group_as_soon_as_its_layer_is_differentiated(monkeypatch):
    """What the groups are for: in a converted model, each group's weight gradients are added into the ring while
    the backward is still in the layers below (the relay created as the layer was entered runs at once), not in
    one pass at the end; the ring gradient is the same as with one group, up to the order of the additions."""
    import modelring as mr
    from modelring import elementwise

    torch.manual_seed(0)
    dense = torch.nn.Sequential(*[torch.nn.Linear(40, 40) for _ in range(5)]).double()
    x = torch.randn(8, 40, dtype=torch.float64, requires_grad=True)  # (the layers' backward hooks fire)
    single = mr.convert(copy.deepcopy(dense), 500, include=["*.weight"])
    single(x).square().sum().backward()
    monkeypatch.setattr(elementwise, "GROUP_MIN_WEIGHTS", 0)
    monkeypatch.setattr(elementwise, "GROUP_RING_MULTIPLE", 0)
    model = mr.convert(copy.deepcopy(dense), 500, include=["*.weight"])
    events, add = [], elementwise.add_group_gradient

    def recorded(wiring, group, grads, sink):
        if any(g is not None for g in grads):
            events.append(("ring", group[0]))
        add(wiring, group, grads, sink)

    monkeypatch.setattr(elementwise, "add_group_gradient", recorded)
    for i, layer in enumerate(model):
        layer.register_full_backward_hook(lambda module, gin, gout, i=i: events.append(("layer", i)))
    model(x).square().sum().backward()
    reduced = [i for kind, i in events if kind == "ring"]
    assert sorted(reduced) == [0, 1, 2, 3, 4]
    for i in range(1, 5):  # layer i's group is reduced before the backward leaves layer i - 1
        assert events.index(("ring", i)) < events.index(("layer", i - 1)), events
    ring, reference = model.modelring.ring0.weight.grad, single.modelring.ring0.weight.grad
    torch.testing.assert_close(ring, reference, rtol=1e-12, atol=1e-12)
    twin = copy.deepcopy(model)  # a copy relays through its own layers
    twin.zero_grad(set_to_none=True)
    events.clear()
    for i, layer in enumerate(twin):
        layer.register_full_backward_hook(lambda module, gin, gout, i=i: events.append(("twin", i)))
    twin(x).square().sum().backward()
    for i in range(1, 5):
        assert events.index(("ring", i)) < events.index(("twin", i - 1)), events
    torch.testing.assert_close(twin.modelring.ring0.weight.grad, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reentrant", [False, True])
def test_relayed_groups_under_gradient_checkpointing_give_the_plain_gradient(reentrant, monkeypatch):
    """A checkpointed layer runs its forward (and its pre-hook, which relays) again inside the backward: the ring
    gradient and the input gradient equal those of the same model without checkpointing."""
    import modelring as mr
    from modelring import elementwise
    from torch.utils.checkpoint import checkpoint

    monkeypatch.setattr(elementwise, "GROUP_MIN_WEIGHTS", 0)
    monkeypatch.setattr(elementwise, "GROUP_RING_MULTIPLE", 0)
    torch.manual_seed(0)
    model = mr.convert(torch.nn.Sequential(*[torch.nn.Linear(30, 30) for _ in range(4)]).double(), 300,
                       include=["*.weight"])
    x = torch.randn(6, 30, dtype=torch.float64, requires_grad=True)

    def run(checkpointed: bool):
        model.zero_grad(set_to_none=True)
        x.grad = None

        def middle(h):
            return model[2](model[1](h))

        class Wrapped(torch.nn.Module):  # the root's forward, so its hooks generate and relay as usual
            def forward(self, h):
                h = model[0](h)
                h = checkpoint(middle, h, use_reentrant=reentrant) if checkpointed else middle(h)
                return model[3](h)

        forward = model.forward
        model.forward = Wrapped().forward
        try:
            model(x).square().sum().backward()
        finally:
            model.forward = forward
        return model.modelring.ring0.weight.grad.clone(), x.grad.clone()

    plain, checkpointed = run(False), run(True)
    torch.testing.assert_close(checkpointed[0], plain[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(checkpointed[1], plain[1], rtol=1e-12, atol=1e-12)
