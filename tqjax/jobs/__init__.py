"""Jobs: batch decoding of prompt files over one or many processes, resumable after a kill."""

from tqjax.jobs.batch import (Summary, check_job, job_spec, part_path, read_part, read_results, repair, run,
                              share, write_job)

__all__ = ["Summary", "check_job", "job_spec", "part_path", "read_part", "read_results", "repair", "run",
           "share", "write_job"]
