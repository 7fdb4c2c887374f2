"""Raw-source importers: Amazon 2014 / 2018 reviews, Yelp, RecBole atomic files.

Each importer streams its files with progress bars, turns them into one polars frame of
interactions and hands it to :func:`pipeline.build_dataset` (k-core, chronological order,
first-appearance ids, metadata). Malformed lines stop the import with ``file:line: reason``
or, with ``on_error="skip"``, are skipped and counted in ``extras["import_report"]``.
"""
from .amazon2014 import import_amazon2014
from .amazon2018 import import_amazon2018
from .lines import ErrorPolicy
from .pipeline import PipelineConfig, build_dataset
from .recbole import export_recbole, import_recbole
from .yelp import import_yelp

__all__ = ["ErrorPolicy", "PipelineConfig", "build_dataset", "export_recbole", "import_amazon2014",
           "import_amazon2018", "import_recbole", "import_yelp"]
