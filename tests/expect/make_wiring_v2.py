"""Write tests/expect/wiring_v2.json: golden fingerprints of the version-2 element-wise wiring.

Run once when version 2 was introduced. Never re-run to "fix" a failing test: a changed fingerprint means every
checkpoint written with this version would load with different weights; bump WIRING_VERSION instead.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))
from helpers import fingerprint, make_spec  # noqa: E402

CASES = [
    dict(shapes=[[8, 4, 3, 3], [10, 8]], size=50, seed=0),
    dict(shapes=[[16, 16, 3, 3], [32, 16, 3, 3], [10, 32]], size=1000, seed=7),
    dict(shapes=[[100003]], size=9999, seed=123456789),
    dict(shapes=[[64, 64, 3, 3], [100, 300], [7]], size=40000, seed=5),
    dict(shapes=[[64, 64]], size=5000, seed=1, permute=False),
    dict(shapes=[[64, 64]], size=5000, seed=1, reflect=False),
    dict(shapes=[[5, 5]], size=100, seed=0),
    dict(shapes=[[300, 70], [9, 9]], size=4321, seed=11),
]

if __name__ == "__main__":
    cases = []
    for case in CASES:
        options = {k: v for k, v in case.items() if k not in ("shapes", "size", "seed")}
        spec = make_spec(case["shapes"], case["size"], seed=case["seed"], block=1, **options)
        assert spec.element_wise
        cases.append({**case, "block": 1, "expect": fingerprint(spec)})
    out = {"wiring_version": 2, "note": "Golden fingerprints of the element-wise layout (block 1). A change here "
           "changes every generated weight: bump WIRING_VERSION instead of editing.", "cases": cases}
    Path(__file__).with_name("wiring_v2.json").write_text(json.dumps(out, indent=1) + "\n")
