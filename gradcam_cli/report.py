"""``index.html``: a self-contained gallery of a run, built from its ``manifest.jsonl``.

Thumbnails are written under ``thumbs/`` in the output folder and every link is relative, so the
folder can be zipped and opened anywhere; nothing is fetched from the network. Every file name and
label is HTML-escaped, and the data given to the page's script is JSON with ``<`` escaped, so a file
called ``<img src=x onerror=alert(1)>.jpg`` shows as text.
"""

from __future__ import annotations

import html
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from . import outputs, render
from .decode import open_rgb
from .errors import GradcamError, ManifestNotFound, OutputError
from .heads import format_prediction, head_class
from .manifest import MANIFEST, Manifest
from .metrics import CURVES_PNG, METRICS_JSON

THUMB_SIZE = 256
REPORT = "index.html"


def _relative(path: str | Path, output_dir: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), output_dir.resolve())).as_posix()


def _url(path: str | Path, output_dir: Path) -> str:
    """The relative URL of ``path``: each segment percent-encoded (UTF-8), so that ``#``, ``?``,
    ``%``, spaces and non-ASCII in a file name are read as part of the name, not as a fragment or
    query (RFC 3986, section 2). The result still goes through :func:`_escape` inside attributes."""
    return "/".join(quote(segment, safe="") for segment in _relative(path, output_dir).split("/"))


def _thumbnail(source: Path, target: Path) -> bool:
    """Write a thumbnail of ``source`` unless an up-to-date one exists; False if unreadable."""
    try:
        if target.stat().st_mtime >= source.stat().st_mtime:
            return True
    except OSError:
        pass
    try:
        image = open_rgb(source, longest_side=THUMB_SIZE)  # decoded at the smallest scale covering it
    except (GradcamError, OSError):
        return False
    image.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.BILINEAR)
    outputs.atomic_write_bytes(target, render.jpeg_bytes(np.asarray(image), quality=85))
    return True


def _cards(rows: list[dict]) -> list[dict]:
    """One card per input, its targets in rank order; failures as cards without pictures."""
    cards: dict[str, dict] = {}
    for row in rows:
        card = cards.setdefault(row["input"], {"input": row["input"], "targets": [], "error": None, "top": []})
        if row.get("status") == "ok":
            card["targets"].append(row)
            card["top"] = row.get("top") or card["top"]
        else:
            card["error"] = row.get("error")
    for card in cards.values():
        card["targets"].sort(key=lambda r: (r.get("method", ""), r.get("rank", 0)))
    return list(cards.values())


def write_report(output_dir: str | Path, workers: int = 4) -> Path:
    """Write ``index.html`` (and thumbnails) for the run in ``output_dir``; return its path."""
    output_dir = Path(output_dir)
    manifest_path = output_dir / MANIFEST
    evaluation = _evaluation_section(output_dir)
    if not manifest_path.exists() and not evaluation:
        raise ManifestNotFound(f"{output_dir}: no {MANIFEST} here; run 'gradcam explain ... -o {output_dir}' first.")
    rows = Manifest.read_rows(manifest_path)
    if manifest_path.exists() and not rows and not evaluation:
        raise ManifestNotFound(f"{manifest_path}: holds no row of a gradcam run (each row names its input); "
                               f"run 'gradcam explain ... -o {output_dir}' to make one.")
    cards = _cards(rows)
    thumbs = output_dir / "thumbs"
    stems = dict(zip([c["input"] for c in cards], outputs.unique_stems(Path(c["input"]).name for c in cards), strict=True))

    jobs = []
    for card in cards:
        if card["targets"]:
            card["thumb"] = thumbs / "originals" / f"{stems[card['input']]}.jpg"
            jobs.append((Path(card["input"]), card["thumb"]))
            for target in card["targets"]:  # overlays keep their (unique) place under the output dir
                target["thumb"] = thumbs / _relative(target["overlay"], output_dir)
                jobs.append((Path(target["overlay"]), target["thumb"]))
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(lambda job: _thumbnail(*job), jobs))
    except OSError as error:
        raise OutputError(f"{thumbs}: cannot write thumbnails ({error.strerror or error}).") from None
    available = {str(job[1]) for job, ok in zip(jobs, done, strict=True) if ok}
    page = _page(cards, output_dir, available, evaluation)
    path = output_dir / REPORT
    outputs.write_file(path, page.encode("utf-8"))
    return path


def _escape(value) -> str:
    return html.escape(str(value), quote=True)


def _reported(row: dict) -> float:
    """A row's reported number: its probability, else a regression's value, a pixel share or a similarity."""
    for key in ("probability", "value", "pixel_share", "similarity"):
        if row.get(key) is not None:
            return float(row[key])
    return 0.0


def _card_html(card: dict, output_dir: Path, available: set[str]) -> str:
    name = _escape(Path(card["input"]).name)
    if card["error"] and not card["targets"]:
        return (f'<article class="card failed" data-class="" data-kind="" data-confidence="-1">'
                f'<h3>{name}</h3><p class="error">{_escape(card["error"])}</p></article>')
    top1_label, top1_probability = (card["top"][0][1], card["top"][0][2]) if card["top"] else ("", 0.0)
    pictures = []
    if str(card.get("thumb")) in available:
        pictures.append(f'<figure><img src="{_escape(_url(card["thumb"], output_dir))}" alt="original {name}">'
                        f"<figcaption>original</figcaption></figure>")
    for target in card["targets"]:
        if str(target.get("thumb")) not in available:
            continue
        shown = format_prediction(target.get("head", "softmax"), target["label"], _reported(target))
        caption = (f'{_escape(target["method"])}: {_escape(shown)}'
                   f'{" — empty map" if target.get("empty_heatmap") else ""}'
                   f'{" — rounding noise, not a finding" if target.get("rounding_noise") else ""}')
        pictures.append(
            f'<figure><a href="{_escape(_url(target["overlay"], output_dir))}">'
            f'<img src="{_escape(_url(target["thumb"], output_dir))}" alt="{caption}"></a>'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    kind = card["targets"][0].get("head", "softmax") if card["targets"] else "softmax"
    top = "".join(f"<li>{_escape(format_prediction(kind, label, float(p)))}</li>" for _, label, p in card["top"])
    layer = _escape(card["targets"][0]["layer"]) if card["targets"] else ""
    return (
        f'<article class="card" data-class="{_escape(top1_label)}" data-kind="{_escape(head_class(kind).sorted_by)}" '
        f'data-confidence="{float(top1_probability):.6f}">'
        f'<h3 title="{_escape(card["input"])}">{name}</h3><div class="pictures">{"".join(pictures)}</div>'
        f'<ol class="top">{top}</ol><p class="layer">layer {layer}</p></article>'
    )


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#f6f6f4;color:#222}
header{display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1rem;margin-top:1rem}
.card{background:#fff;border-radius:8px;padding:.8rem;box-shadow:0 1px 3px #0002}
.card h3{font-size:.95rem;margin:0 0 .5rem;overflow-wrap:anywhere}
.pictures{display:flex;gap:.5rem;flex-wrap:wrap}
figure{margin:0}figure img{width:190px;height:auto;border-radius:4px;display:block}
figcaption{font-size:.8rem;color:#555;max-width:190px}
.top{font-size:.85rem;margin:.5rem 0 0;padding-left:1.2rem}.top span{color:#666}
.layer{font-size:.75rem;color:#777;margin:.3rem 0 0}
.evaluation table{border-collapse:collapse;background:#fff;font-size:.85rem}
.evaluation td,.evaluation th{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left}
.evaluation small{color:#666}.evaluation tr.baseline{color:#666}.curves{max-width:100%;margin-top:.6rem}
.failed{border-left:4px solid #c33}.error{color:#a22;font-size:.85rem;overflow-wrap:anywhere}
"""

SCRIPT = """
(function () {
  const grid = document.getElementById('cards');
  const filter = document.getElementById('class-filter');
  const order = document.getElementById('sort');
  const count = document.getElementById('shown');
  function apply() {
    const cards = Array.from(grid.children);
    const wanted = filter.value;
    cards.sort((a, b) => {
      const failed = a.classList.contains('failed') - b.classList.contains('failed');
      if (failed) return failed;  // failed inputs last, whatever the order
      // a folder explained by models with different heads: probabilities and values are not one scale
      if (a.dataset.kind !== b.dataset.kind) return a.dataset.kind < b.dataset.kind ? -1 : 1;
      const d = parseFloat(b.dataset.confidence) - parseFloat(a.dataset.confidence);
      return order.value === 'asc' ? -d : d;
    });
    let shown = 0;
    for (const card of cards) {
      const visible = wanted === '' || card.dataset.class === wanted;
      card.hidden = !visible;
      if (visible) shown += 1;
      grid.appendChild(card);
    }
    count.textContent = shown;
  }
  filter.addEventListener('change', apply);
  order.addEventListener('change', apply);
  apply();
})();
"""


def _evaluation_section(output_dir: Path) -> str:
    """The scores of a ``gradcam evaluate`` run in this folder (its metrics.json), or ''."""
    try:
        data = json.loads((output_dir / METRICS_JSON).read_text(encoding="utf-8"))
        metrics, summaries = data["metrics"], data["methods"]
        ranking = data.get("ranking") or list(summaries)
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    sanity = data.get("sanity") or {}
    baselines = set(data.get("baselines") or ())

    def cell(summary: dict) -> str:
        if not summary or summary.get("mean") is None:
            return "<td>-</td>"
        low, high = summary["ci95"]
        return f"<td>{summary['mean']:.3f} <small>[{low:.3f}, {high:.3f}] n={summary['n']}</small></td>"

    head = "".join(f"<th>{_escape(m)}</th>" for m in metrics) + ("<th>sanity rho</th>" if sanity else "")
    body = []
    for method in ranking:
        cells = "".join(cell(summaries[method].get(m, {})) for m in metrics)
        if sanity and method in sanity:
            entry = sanity[method]
            mean = entry["rank_correlation"]["mean"]
            flag = " <strong>flagged</strong>" if entry.get("flagged") else ""
            cells += f"<td>{'-' if mean is None else f'{mean:.2f}'}{flag}</td>"
        name = _escape(method) + (" <small>(baseline)</small>" if method in baselines else "")
        body.append(f'<tr{" class=baseline" if method in baselines else ""}><th>{name}</th>{cells}</tr>')
    gate = data.get("gate") or {}
    missed = "".join(f"<li>{_escape(line)}</li>" for line in gate.get("missed", []))
    verdict = f"<p>gate: missed</p><ul>{missed}</ul>" if missed else ""
    curves = (f'<img src="{CURVES_PNG}" alt="mean deletion and insertion curves" class="curves">'
              if (output_dir / CURVES_PNG).exists() else "")
    return (f'<section class="evaluation"><h2>Evaluation: {_escape(data.get("model", ""))}, layer '
            f'{_escape(data.get("layer", ""))}, {int(data.get("images", 0))} image(s)</h2>'
            f"<p>Best first by {_escape(metrics[0]) if metrics else '-'}; mean [95% bootstrap interval] n. "
            f"Read every score against the random and center baselines.</p>"
            f'<table><tr><th>method</th>{head}</tr>{"".join(body)}</table>{verdict}{curves}</section>')


def _sort_label(cards: list[dict]) -> str:
    """What the sort orders by: the top prediction's probability, a regression's value or a
    segmentation's pixel share; several of them (runs of different models in one folder) are kept
    in groups, one per head kind."""
    kinds = {card["targets"][0].get("head", "softmax") for card in cards if card["targets"]}
    names = sorted({head_class(kind).sorted_by for kind in kinds})
    if len(names) <= 1:
        return f"sort by {names[0] if names else 'probability'}"
    return f"sort by {' / '.join(names)} (grouped by model head)"


def _page(cards: list[dict], output_dir: Path, available: set[str], evaluation: str = "") -> str:
    classes = sorted({c["top"][0][1] for c in cards if c["top"] and c["targets"]})
    options = "".join(f'<option value="{_escape(label)}">{_escape(label)}</option>' for label in classes)
    failed = [c for c in cards if c["error"] and not c["targets"]]
    methods = sorted({t["method"] for c in cards for t in c["targets"]})
    summary = {"images": len(cards), "failed": len(failed), "methods": methods}
    body = "\n".join(_card_html(card, output_dir, available) for card in cards)
    summary_json = json.dumps(summary).replace("<", "\\u003c")
    failures = "".join(f"<li>{_escape(c['error'])}</li>" for c in failed)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gradcam report: {_escape(output_dir.name)}</title>
<style>{STYLE}</style></head>
<body>
<header><h1>gradcam report</h1>
<div{"" if cards else " hidden"}>
<label>predicted class <select id="class-filter"><option value="">all</option>{options}</select></label>
<label>{_escape(_sort_label(cards))} <select id="sort"><option value="desc">high first</option><option value="asc">low first</option></select></label>
<span><span id="shown">{len(cards)}</span> of {len(cards)} images; {len(failed)} failed; methods: {_escape(", ".join(methods))}</span>
</div>
</header>
{evaluation}
{f'<section class="failures"><h2>Failed inputs</h2><ul>{failures}</ul></section>' if failed else ''}
<main class="grid" id="cards">
{body}
</main>
<script type="application/json" id="summary">{summary_json}</script>
<script>{SCRIPT}</script>
</body></html>
"""
