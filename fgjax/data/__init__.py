"""Data for fgjax: QA-Feedback loaders, reward-model training data builders, TFDS builder.

Modules:
- ``qa_feedback_schema``: typed frozen records and their validation (``QAFeedbackFormatError``
  names the file, the record index and the field);
- ``qa_feedback_files``: split file paths, loading, ``download`` of the public release;
- ``rm_builders``: R1 / R2 segment examples, R3 coverage and holistic preference pairs;
- ``rm_coverage``: R3's passage-sentence matching (difflib ``quick_ratio``, vectorised);
- ``rm_tokenize``: fixed-length int32 arrays in the ``[prompt ; answer]`` layout;
- ``qa_feedback``: statistics and the command line (``python -m fgjax.data.qa_feedback``);
- ``tfds_qa_feedback``: a TFDS ``GeneratorBasedBuilder`` (array_record, no TensorFlow);
  imported on demand since it pulls in tensorflow_datasets.
"""

from fgjax.data.qa_feedback_files import (
    DownloadError,
    download,
    feedback_path,
    load_feedback_split,
    load_prompts_split,
    prompts_path,
)
from fgjax.data.qa_feedback_schema import (
    FeedbackRecord,
    QAFeedbackFormatError,
    QAPrompt,
    load_feedback,
    load_prompts,
)

__all__ = [
    "DownloadError",
    "FeedbackRecord",
    "QAFeedbackFormatError",
    "QAPrompt",
    "download",
    "feedback_path",
    "load_feedback",
    "load_feedback_split",
    "load_prompts",
    "load_prompts_split",
    "prompts_path",
]
