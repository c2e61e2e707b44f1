"""`index duplicates`: near-duplicate groups, measured on planted copies of real images.

Fashion-MNIST test images, with re-encoded, resized, cropped and mirrored copies of every
6th one (benchmarks/index_duplicates.py plants them), indexed with the bundled Fashion-MNIST
model. At the default threshold the groups must find the copies (recall) and little else
(precision). benchmarks/index_duplicates.py runs the same measurement on CIFAR-10.
"""
from __future__ import annotations

import csv
import io
import json

import pytest

from benchmarks.index_duplicates import KINDS, evaluate, plant
from frossl_hub.cli import main
from frossl_hub.embed_folder import list_images
from frossl_hub.index import (DEFAULT_THRESHOLD, BuildOptions, SearchArgumentError, build_index,
                              find_duplicates, open_index)
from helpers import one_torch_thread  # noqa: F401  (fixture)
from index_helpers import MODEL, fashion_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    base = tmp_path_factory.mktemp("dups")
    source = fashion_folder(base / "source", 60, start=1000)
    truth = plant(list_images(source), source, base / "images", every=6)
    build_index(base / "images", MODEL, base / "idx", BuildOptions(workers=0, progress=False))
    return open_index(base / "idx"), truth, base / "idx"


def test_planted_copies_are_found_at_the_default_threshold(planted):
    index, truth, _ = planted
    assert len(truth) == 10 * len(KINDS) and len(index) == 60 + len(truth)
    rows = {t: (p, r, kinds) for t, p, r, kinds in evaluate(index, truth)}
    for t, (p, r, kinds) in sorted(rows.items()):
        print(f"threshold {t}: precision {p:.3f} recall {r:.3f}",
              " ".join(f"{k} {v:.2f}" for k, v in kinds.items()))
    precision, recall, _ = rows[DEFAULT_THRESHOLD]
    assert precision >= 0.9 and recall >= 0.9, rows[DEFAULT_THRESHOLD]


def test_duplicates_json_and_csv(planted, capsys):
    _, truth, idx = planted
    assert main(["index", "duplicates", str(idx), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)
    copy = next(iter(truth))
    group = next(g for g in groups if copy in [i["path"] for i in g["items"]])
    assert truth[copy] in [i["path"] for i in group["items"]]
    assert group["min_score"] >= DEFAULT_THRESHOLD
    assert main(["index", "duplicates", str(idx), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["path"] for r in rows} == {i["path"] for g in groups for i in g["items"]}


def test_a_threshold_outside_0_1_is_refused(planted, capsys):
    _, _, idx = planted
    assert main(["index", "duplicates", str(idx), "--threshold", "1.5"]) == 2
    assert "threshold: must be in (0, 1]" in capsys.readouterr().err
    with pytest.raises(SearchArgumentError):
        find_duplicates(planted[0], 0)
