"""Data for fgjax: QA-Feedback loaders, reward-model training data builders, TFDS builder.

Modules:
- ``qa_feedback_schema``: typed records and their validation (``QAFeedbackFormatError``);
- ``qa_feedback_files``: split file paths, loading, ``download`` of the public release;
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
