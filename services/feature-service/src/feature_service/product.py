"""A product's Feast repository, loaded with Feast's own parser, and the layout derived from it.

A product (``creditrisk_products``) is a folder with a ``product.toml`` and a standard Feast
feature repository. :func:`load_repo` parses the repository with ``feast.repo_operations.parse_repo``;
:func:`layout_of` derives the :class:`~feature_service.schema.ProductLayout` the service works
with, after :func:`check_product` has checked ``product.toml`` against the repository (every
problem named by its product key or repository object).

CLI::

    python -m feature_service.product validate <product folder>

exits 0 printing a summary, or 2 listing every problem.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from creditrisk_products import Product, ProductError, load_product

from feature_service.schema import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    Kind,
    OnDemandSpec,
    ProductLayout,
    ViewSpec,
)

if TYPE_CHECKING:
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, RequestSource

#: Feast's placeholder entity of entity-less views (``parse_repo`` always adds it).
DUMMY_ENTITY_NAME = "__dummy"
_PARSE_LOCK = threading.Lock()
#: An offline table name: a Parquet file stem and a PostgreSQL table (unquoted identifier rules;
#: 55 characters leave room for the ``_key_ts`` index within PostgreSQL's 63).
TABLE_PATTERN = r"[a-z_][a-z0-9_]{0,54}"
#: A feature or column name (as the product file's; quoted in SQL, a path in JSON).
COLUMN_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,127}"


@dataclass
class ParsedRepo:
    """The Feast objects of one product repository, by name, in the repository's order.

    Fresh objects on every :func:`load_repo` (the repository's modules are imported anew), so a
    caller may re-point their sources without affecting another load.
    """

    root: Path
    entities: dict[str, Entity]
    feature_views: dict[str, FeatureView]
    on_demand_feature_views: dict[str, OnDemandFeatureView]
    feature_services: dict[str, FeatureService]
    request_sources: dict[str, RequestSource]
    stream_feature_views: tuple[str, ...] = ()


def _module_names(root: Path) -> list[str]:
    """The top-level module names Feast's parser gives the repository's files (and their packages)."""
    from feast.repo_operations import get_repo_files

    names: set[str] = set()
    for file in get_repo_files(root):
        if not file.is_relative_to(root):
            raise ProductError(root, [("[product].feature_repo", f"{file} links outside the repository")])
        parts = file.relative_to(root).with_suffix("").parts
        names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(names)


def _under(module: Any, root: Path) -> bool:
    file = getattr(module, "__file__", None)
    if not file:
        paths = list(getattr(module, "__path__", []) or [])
        file = paths[0] if paths else None
    if not file:
        return False
    return Path(file).resolve().is_relative_to(root)


@contextlib.contextmanager
def _repo_import_context(root: Path, product_file: Path) -> Iterator[None]:
    """Hold the lock, make ``root`` the cwd and first on ``sys.path``; restore both and forget the
    repository's modules afterwards (so a later load imports them afresh)."""
    with _PARSE_LOCK:
        names = _module_names(root)
        clashes = [n for n in names if n in sys.modules and not _under(sys.modules[n], root)]
        if clashes:
            raise ProductError(
                product_file,
                [
                    (
                        "[product].feature_repo",
                        f"module name(s) {clashes} of {root} are already imported from elsewhere",
                    )
                ],
            )
        cwd, path, no_bytecode = os.getcwd(), list(sys.path), sys.dont_write_bytecode
        os.chdir(root)
        sys.path.insert(0, str(root))
        sys.dont_write_bytecode = True  # leave no __pycache__ in the product's folder
        importlib.invalidate_caches()
        try:
            yield
        finally:
            os.chdir(cwd)
            sys.path[:] = path
            sys.dont_write_bytecode = no_bytecode
            for name in [n for n, m in list(sys.modules.items()) if n in names or _under(m, root)]:
                sys.modules.pop(name, None)


def load_repo(product: Product) -> ParsedRepo:
    """Parse the product's Feast repository with ``feast.repo_operations.parse_repo``.

    Raises:
        ProductError: the repository is missing, a module name clashes with one already imported,
            or a module fails to import (the error named).
    """
    from feast.repo_operations import parse_repo

    root = product.feature_repo_path.resolve()
    if not root.is_dir():
        raise ProductError(product.file, [("[product].feature_repo", f"no folder {root}")])
    with _repo_import_context(root, product.file):
        try:
            contents = parse_repo(root)
        except ProductError:
            raise
        except (Exception, SystemExit) as exc:  # a module calling sys.exit() is not a valid repository
            raise ProductError(
                product.file, [("[product].feature_repo", f"cannot be loaded: {type(exc).__name__}: {exc}")]
            ) from exc
    from feast import RequestSource

    return ParsedRepo(
        root=root,
        entities={e.name: e for e in contents.entities if e.name != DUMMY_ENTITY_NAME},
        feature_views={v.name: v for v in contents.feature_views},
        on_demand_feature_views={v.name: v for v in contents.on_demand_feature_views},
        feature_services={s.name: s for s in contents.feature_services},
        request_sources={s.name: s for s in contents.data_sources if isinstance(s, RequestSource)},
        stream_feature_views=tuple(v.name for v in contents.stream_feature_views),
    )


def kind_of(dtype: Any) -> Kind | None:
    """The column kind of a Feast dtype (Int64, Float64, Bool, String), or None if unsupported."""
    from feast.types import Bool, Float64, Int64, String

    kinds: list[tuple[Any, Kind]] = [(Int64, "int"), (Float64, "float"), (Bool, "bool"), (String, "string")]
    return next((kind for t, kind in kinds if dtype == t), None)


def table_of(source: Any) -> str:
    """The offline table of a batch source: a file source's path stem, else the source's name."""
    from feast import FileSource

    if isinstance(source, FileSource) and source.path:
        return Path(source.path).stem
    return str(source.name)


def service_features(fs: FeatureService) -> list[tuple[str, str]]:
    """``(view, feature)`` pairs of a feature service, in its order."""
    return [(p.name, f.name) for p in fs.feature_view_projections for f in p.features]


def check_product(product: Product, repo: ParsedRepo) -> list[tuple[str, str]]:
    """Every inconsistency of ``product.toml`` with the Feast repository, as ``(key, message)``.

    The key is the product file's key (``[label].view``) or the repository object at fault
    (``feature_repo: feature view 'x'``). Empty when the two agree.
    """
    from feast import PushSource, ValueType

    problems: list[tuple[str, str]] = []
    ent = product.entity
    entity = repo.entities.get(ent.name)
    if entity is None:
        problems.append(
            ("[entity].name", f"no entity {ent.name!r} in the repository ({sorted(repo.entities)})")
        )
    else:
        if entity.join_key != ent.join_key:
            problems.append(
                ("[entity].join_key", f"{ent.join_key!r}, but entity {ent.name!r} has {entity.join_key!r}")
            )
        want = ValueType.INT64 if ent.type == "int64" else ValueType.STRING
        if entity.value_type != want:
            problems.append(
                ("[entity].type", f"{ent.type!r}, but entity {ent.name!r} is {entity.value_type.name}")
            )
    if repo.stream_feature_views:
        problems.append(
            ("feature_repo", f"stream feature views are not supported: {list(repo.stream_feature_views)}")
        )
    reserved = {EVENT_TIMESTAMP, CREATED_TIMESTAMP, "label_timestamp", product.label.application_time_column}
    for view in repo.feature_views.values():
        where = f"feature_repo: feature view {view.name!r}"
        if list(view.entities) != [ent.name]:
            problems.append((where, f"keyed by {list(view.entities)}, not the product's entity {ent.name!r}"))
        if not re.fullmatch(TABLE_PATTERN, table_of(view.batch_source) if view.batch_source else "x"):
            problems.append(
                (
                    f"{where} batch source",
                    f"table {table_of(view.batch_source)!r} must match {TABLE_PATTERN} "
                    "(it names a Parquet file and a PostgreSQL table)",
                )
            )
        for f in view.features:
            if not re.fullmatch(COLUMN_PATTERN, f.name):
                problems.append((f"{where} field {f.name!r}", f"a column name must match {COLUMN_PATTERN}"))
            if f.name in reserved:
                problems.append(
                    (
                        f"{where} field {f.name!r}",
                        "a column the platform writes (event, created, label and application times): "
                        "rename the feature",
                    )
                )
            if kind_of(f.dtype) is None:
                problems.append(
                    (
                        f"{where} field {f.name!r}",
                        f"unsupported type {f.dtype} (Int64, Float64, Bool, String)",
                    )
                )
        source = view.batch_source
        if source is None:
            problems.append((where, "has no batch source"))
        elif (source.timestamp_field, source.created_timestamp_column) != (
            EVENT_TIMESTAMP,
            CREATED_TIMESTAMP,
        ):
            problems.append(
                (where, f"batch source must stamp rows with {EVENT_TIMESTAMP!r} and {CREATED_TIMESTAMP!r}")
            )
        if view.stream_source is not None and not isinstance(view.stream_source, PushSource):
            problems.append((where, "only push sources are supported as stream sources"))
    tables = [table_of(v.batch_source) for v in repo.feature_views.values() if v.batch_source is not None]
    if len(set(tables)) != len(tables):
        problems.append(("feature_repo", f"two feature views share an offline table: {tables}"))

    feats = product.features
    model = repo.feature_services.get(feats.model_service)
    if model is None:
        problems.append(("[features].model_service", f"no feature service {feats.model_service!r}"))
    fairness = repo.feature_services.get(feats.fairness_service) if feats.fairness_service else None
    if feats.fairness_service and fairness is None:
        problems.append(("[features].fairness_service", f"no feature service {feats.fairness_service!r}"))
    model_features = {f for _, f in service_features(model)} if model else set()
    fairness_features = {f for _, f in service_features(fairness)} if fairness else set()
    for name in feats.protected_attributes:
        if name in model_features:
            problems.append(
                ("[features].protected_attributes", f"{name!r} is a feature of the model service")
            )
        if name not in fairness_features:
            problems.append(
                ("[features].protected_attributes", f"{name!r} is not a feature of the fairness service")
            )

    lab = product.label
    label_view = repo.feature_views.get(lab.view)
    if label_view is None:
        problems.append(("[label].view", f"no feature view {lab.view!r}"))
    else:
        names = [f.name for f in label_view.features]
        if label_view.online:
            problems.append(("[label].view", f"{lab.view!r} must be offline-only (online=False)"))
        if lab.column not in names:
            problems.append(("[label].column", f"{lab.column!r} is not a field of {lab.view!r} ({names})"))
        elif kind_of(next(f.dtype for f in label_view.features if f.name == lab.column)) != "int":
            problems.append(
                (
                    "[label].column",
                    f"{lab.column!r} must be Int64 (1 = positive class, 0 = not); a file holding text "
                    "(yes / no) maps it with [ingest].label_codes",
                )
            )
        if lab.application_time_column in names:
            problems.append(
                (
                    "[label].application_time_column",
                    f"{lab.application_time_column!r} is a feature of {lab.view!r}",
                )
            )
        if model and lab.view in {p.name for p in model.feature_view_projections}:
            problems.append(("[label].view", f"{lab.view!r} is read by the model service"))

    for name in product.drift.features:
        if name not in model_features | fairness_features:
            problems.append((f"[drift].features.{name}", "not a feature of the model or fairness service"))

    request_fields = {f.name for rs in repo.request_sources.values() for f in rs.schema}
    for caller, target in product.serving.request_fields.items():
        if target not in request_fields:
            problems.append(
                (f"[serving].request_fields.{caller}", f"{target!r} is not a field of a request source")
            )
        if caller not in model_features:
            problems.append((f"[serving].request_fields.{caller}", "not a feature of the model service"))

    ing = product.ingest
    features = {f.name for v in repo.feature_views.values() for f in v.features}
    if ing.entity_key == "row_number" and ent.type != "int64":
        problems.append(("[ingest].entity_key", "row numbers need an int64 entity key"))
    for key, column in (
        ("[ingest].entity_key", ing.entity_key),
        ("[ingest].application_time", ing.application_time),
    ):
        if column and column != "row_number" and column in features:
            problems.append((key, f"{column!r} is a feature column"))
    label_source = ing.label_source or lab.column
    if label_source != lab.column and label_source in features:
        problems.append(("[ingest].label_source", f"{label_source!r} is a feature column"))
    if label_source in (ing.entity_key, ing.application_time):
        problems.append(("[ingest].label_source", f"{label_source!r} is also the key or time column"))
    return problems


def _order(repo: ParsedRepo, product: Product) -> list[str]:
    """Views in feature-service order (model, fairness, the others), the label view last."""
    order: dict[str, None] = {}
    services = [product.features.model_service, product.features.fairness_service, *repo.feature_services]
    for name in services:
        fs = repo.feature_services.get(name)
        for p in fs.feature_view_projections if fs else []:
            if p.name in repo.feature_views and p.name != product.label.view:
                order[p.name] = None
    order.update(dict.fromkeys(n for n in repo.feature_views if n != product.label.view))
    order[product.label.view] = None
    return list(order)


def layout_of(product: Product, repo: ParsedRepo) -> ProductLayout:
    """The product's layout, from its repository.

    Raises:
        ProductError: ``product.toml`` disagrees with the repository (every problem named).
    """
    from feast import PushSource

    problems = check_product(product, repo)
    if problems:
        raise ProductError(product.file, problems)
    key = product.entity.join_key
    key_kind: Kind = "int" if product.entity.type == "int64" else "string"
    specs: dict[str, ViewSpec] = {}
    for name in _order(repo, product):
        view = repo.feature_views[name]
        push = view.stream_source if isinstance(view.stream_source, PushSource) else None
        is_label = name == product.label.view
        specs[name] = ViewSpec(
            name=name,
            table=table_of(view.batch_source),
            features=tuple((f.name, kind_of(f.dtype) or "string") for f in view.features),
            online=view.online,
            push=push is not None,
            description=view.description,
            extras=((product.label.application_time_column, "timestamp"),) if is_label else (),
            key=key,
            key_kind=key_kind,
            push_source_name=push.name if push is not None else "",
        )
    model = repo.feature_services[product.features.model_service]
    model_views = dict.fromkeys(p.name for p in model.feature_view_projections if p.name in specs)
    odfvs = tuple(
        OnDemandSpec(
            name=o.name,
            features=tuple((f.name, kind_of(f.dtype) or "string") for f in o.features),
            request_source=next(iter(o.source_request_sources), ""),
            request_fields=tuple(
                (f.name, kind_of(f.dtype) or "string")
                for rs in o.source_request_sources.values()
                for f in rs.schema
            ),
        )
        for o in repo.on_demand_feature_views.values()
    )
    return ProductLayout(
        product=product.name,
        project=product.product.feast_project,
        entity_name=product.entity.name,
        entity_key=key,
        entity_kind=key_kind,
        views=tuple(specs.values()),
        model_service=model.name,
        model_views=tuple(specs[n] for n in model_views),
        fairness_service=product.features.fairness_service,
        label_view=specs[product.label.view],
        label_column=product.label.column,
        application_time_column=product.label.application_time_column,
        feature_services=tuple(repo.feature_services),
        on_demand=odfvs,
        request_fields=dict(product.serving.request_fields),
    )


def load_layout(product: Product) -> ProductLayout:
    """Parse the product's repository and derive its layout.

    Raises:
        ProductError: the repository cannot be loaded or disagrees with ``product.toml``.
    """
    return layout_of(product, load_repo(product))


def summary(product: Product, layout: ProductLayout) -> str:
    """A few lines describing a valid product."""
    lines = [
        f"product {product.name}: Feast project {layout.project}, entity {layout.entity_name} "
        f"({layout.entity_key}, {product.entity.type})",
        f"  model service {layout.model_service}: views {[v.name for v in layout.model_views]}",
    ]
    if layout.fairness_service:
        lines.append(f"  fairness service {layout.fairness_service}")
    lines.append(f"  label {layout.label_view.name}.{layout.label_column} (offline only)")
    for view in layout.views:
        lines.append(f"  view {view.name}: table {view.table}, {len(view.features)} feature(s)")
    for odfv in layout.on_demand:
        lines.append(f"  on-demand {odfv.name}: {[n for n, _ in odfv.features]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 valid, 2 invalid)."""
    parser = argparse.ArgumentParser(
        prog="python -m feature_service.product", description="Check a product against its Feast repository."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check product.toml against the product's Feast repository")
    validate.add_argument("folder", type=Path, help="the product's folder (holding product.toml)")
    args = parser.parse_args(argv)
    try:
        product = load_product(args.folder)
        layout = load_layout(product)
    except ProductError as exc:
        print(f"invalid product ({len(exc.problems)} problem(s)):\n{exc}", file=sys.stderr)
        return 2
    print(summary(product, layout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
