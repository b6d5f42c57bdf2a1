"""scikit-learn / scipy values for the metric cases in argv[1] (JSON list of {pred, ref}); prints a JSON list."""
import json
import sys
import warnings

from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

warnings.filterwarnings("ignore")
out = []
for c in json.load(open(sys.argv[1])):
    p, r = c["pred"], c["ref"]
    d = {"accuracy": accuracy_score(r, p), "matthews": matthews_corrcoef(r, p)}
    if set(p) | set(r) <= {0, 1}:
        d["f1"] = f1_score(r, p, zero_division=0)
    x, y = c.get("x"), c.get("y")
    if x is not None:
        d["pearson"] = None if len(set(x)) < 2 or len(set(y)) < 2 else float(pearsonr(x, y)[0])
        d["spearman"] = None if len(set(x)) < 2 or len(set(y)) < 2 else float(spearmanr(x, y)[0])
    out.append(d)
print(json.dumps(out))
