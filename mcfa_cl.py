import sys, numpy as np, torch, joblib
sys.path.insert(0, "/work/main/benchmarks"); sys.path.insert(0, "/work/main"); sys.path.insert(0, ".")
from _common import load
from bench_extensions import refitted
from skdcgmm._input import positions
from skdcgmm.metrics import clustering_accuracy
from sklearn.metrics import normalized_mutual_info_score as nmi
import mcfa
torch.set_num_threads(2)
seed = int(sys.argv[1]); settings = [tuple(float(v) for v in s.split(":")) for s in sys.argv[2:]]
X, y, Xt, yt = load("fashion-mnist")
m = joblib.load(f"/work/scratch/s41/sgd_c49_{seed}.joblib")
m = refitted(m, X, 0.005); st = m.module_; st.eval(); sh = positions(m.image_shape_)
p = m.predict(Xt); print(f"seed {seed} diag: acc {clustering_accuracy(yt,p):.4f} nmi {nmi(yt,p):.4f}", flush=True)
def feats(A):
    with torch.no_grad():
        return torch.cat([st.top_input(torch.as_tensor(A[i:i+2000], dtype=torch.float32).view(-1, *sh)) for i in range(0, len(A), 2000)])
F, Ft = feats(X), feats(Xt)
with torch.no_grad():
    resp = torch.cat([torch.softmax(st.top.log_scores(F[i:i+5000])[:, 0].double(), -1) for i in range(0, len(F), 5000)]).numpy()
F, Ft = F[:, 0].numpy(), Ft[:, 0].numpy()
for d, fl in settings:
    mod = mcfa.fit(F, int(d), fl, resp)
    p = mcfa.predict(mod, Ft); ptr = mcfa.predict(mod, F)
    print(f"seed {seed} d{int(d)} f{fl}: it {mod['n_iter']} acc {clustering_accuracy(yt,p):.4f} nmi {nmi(yt,p):.4f} train nmi {nmi(y,ptr):.4f} LL {mcfa.score(mod, F[:5000]).mean():.1f}", flush=True)
