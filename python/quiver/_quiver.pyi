"""The native half of the quiver package (Rust, built with maturin). Use the wrappers in
``quiver`` (``FeatureStore``), not this module directly."""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import pyarrow as pa

__version__: str

class Store:
    def __init__(self, repo: str, config: Optional[str] = None) -> None: ...
    def root(self) -> str: ...
    def plan(self) -> Tuple[str, str]: ...
    def apply(self) -> str: ...
    def registry(self) -> str: ...
    def get_historical_features(
        self,
        features: str,
        entities: Optional[pa.RecordBatchReader] = None,
        path: Optional[str] = None,
        timestamp_column: Optional[str] = None,
        full_feature_names: bool = False,
        created_cutoff: bool = False,
        memory_limit: Optional[int] = None,
    ) -> pa.Table: ...
    def materialize(
        self,
        views: List[str],
        end: Optional[str] = None,
        start: Optional[str] = None,
        progress: bool = True,
    ) -> str: ...
    def get_online_features(
        self,
        features: Union[str, Sequence[str]],
        entities: Dict[str, List[Any]],
        full_feature_names: bool = False,
    ) -> Dict[str, Any]: ...
    def push(
        self,
        source: str,
        rows: pa.RecordBatchReader,
        to: str = "online",
        batch_rows: int = 10000,
    ) -> Tuple[int, int, int, int]: ...
    def close(self) -> None: ...
