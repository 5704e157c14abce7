"""attnflow.io: files: .npy matrices and vectors, CSV tables (the formats the CLI reads and
writes).

The C++ module attnflow_io (include/attnflow/io/npy.hpp, csv.hpp).
"""
from ._attnflow import (  # noqa: F401
    CsvTable, read_csv, read_npy_matrix, read_npy_vector, write_csv, write_npy,
)

__all__ = ["CsvTable", "read_csv", "read_npy_matrix", "read_npy_vector", "write_csv",
           "write_npy"]
