"""wiring_report: use counts, sign balance, adjacency and kernel sharing, pinned on small cases."""
import pytest
import torch

import modelring as mr
from helpers import make_spec
from modelring import wiring as wr
from modelring.cli import main
from modelring.diagnose import ring_report
from modelring.wiring import entries_and_signs

RESNETISH = [[16, 3, 3, 3], [16, 16, 3, 3], [32, 16, 3, 3], [10, 32]]


def test_unpermuted_unreflected_kernels_read_the_same_entries():
    report = ring_report(make_spec([[2, 1, 3, 3]], 9, permute=False, reflect=False))
    assert (report.use_min, report.use_max) == (2, 2)
    assert report.negative_fraction == 0.0
    assert report.adjacent_fraction == 1.0
    assert (report.kernels_checked, report.kernels_sharing_most) == (2, 2)


def test_aligned_blocks_make_exact_kernel_copies():
    report = ring_report(make_spec([[4, 1, 3, 3]], 18, block=9, permute=False))
    assert report.kernel_sharing_fraction == 1.0 and report.adjacent_fraction == 1.0


def test_element_wise_wiring_has_no_structure():
    spec = make_spec(RESNETISH, 1000, seed=3)
    report = ring_report(spec)
    assert (report.use_min, report.use_max) == (spec.total // 1000, -(-spec.total // 1000))
    assert abs(report.negative_fraction - 0.5) < 0.02
    assert report.adjacent_fraction < 0.01
    assert report.kernels_checked == 16 * 3 + 16 * 16 + 32 * 16 and report.kernels_sharing_most == 0


def test_blocks_of_16_keep_runs_of_neighbouring_entries():
    spec = make_spec(RESNETISH, 1000, seed=3, block=16)
    report = ring_report(spec)
    # inside a block (and inside a layer's tail) each next weight reads the next entry; across blocks by chance
    sure = sum(15 * (s.numel // 16) + max(s.numel % 16 - 1, 0) for s in spec.segments)
    pairs = sum(s.numel - 1 for s in spec.segments)
    assert sure / pairs <= report.adjacent_fraction <= sure / pairs + 0.01
    assert report.kernel_sharing_fraction > 0.5  # most kernels are near-copies of a kernel elsewhere


def test_independent_sampling_is_uneven_and_the_report_says_so():
    report = ring_report(make_spec(RESNETISH, 1000, seed=3, sampling="independent"))
    assert report.use_max - report.use_min > 2 and "independent" in str(report)


def test_entries_agree_with_the_generated_weights():
    spec = make_spec(RESNETISH, 500, seed=1)
    entries, negative = entries_and_signs(spec)
    model_like = mr.generate.RingGenerator(spec)
    ring = torch.arange(1, 501, dtype=torch.float64)  # entry e holds e + 1: the weight tells which entry it read
    flat = torch.cat([w.reshape(-1) for w in model_like.weights(ring)])
    assert torch.equal(flat.abs().long() - 1, entries) and torch.equal(flat < 0, negative)


def test_wiring_report_needs_a_converted_model():
    with pytest.raises(ValueError, match="convert"):
        mr.wiring_report(mr.create_model("resnet8"))


def test_cli_count_wiring(capsys):
    assert main(["count", "resnet8", "--ring-size", "0.05", "--block", "16", "--wiring"]) == 0
    out = capsys.readouterr().out
    assert "blocks of 16" in out and "next weight reads next entry" in out
    assert main(["count", "resnet8", "--wiring"]) == 2
    assert wr.WIRING_VERSION == 2


def test_readme_wiring_table_matches_the_report():
    text = (__import__("pathlib").Path(__file__).parent.parent / "README.md").read_text()
    rows = {"`block=1` (default, the paper's)": {}, "`block=16`": {"block": 16}, "`permute=False`": {"permute": False}}
    for label, options in rows.items():
        line = next(line for line in text.splitlines() if line.strip().startswith(f"| {label} |"))
        adjacent, sharing = (float(cell) for cell in line.strip().strip("|").split("|")[1:3])
        model = mr.convert(mr.create_model("resnet20"), 0.03, exclude=["conv1.weight", "fc.*"], **options)
        report = mr.wiring_report(model)[0]
        assert (report.size, report.total) == (8018, 267264)
        assert round(report.adjacent_fraction, 3) == adjacent and round(report.kernel_sharing_fraction, 3) == sharing
