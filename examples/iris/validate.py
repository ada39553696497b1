"""Load the iris data, check it, and split it into train and test files."""

from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from mlops_nb.pipelines import context, output

ctx = context()
frame = load_iris(as_frame=True).frame
if frame.isna().any().any():
    raise SystemExit("iris has missing values")
if set(frame["target"]) != {0, 1, 2}:
    raise SystemExit(f"unexpected classes {sorted(set(frame['target']))}")
train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame["target"])
train.to_parquet(ctx.output_dir / "train.parquet")
test.to_parquet(ctx.output_dir / "test.parquet")
output("rows", len(frame))
print(f"validated {len(frame)} rows: {len(train)} train, {len(test)} test")
