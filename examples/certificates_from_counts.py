"""
From class counts of noisy samples to certified radii: the certificate math of art-stn without any model.

Run: `python examples/certificates_from_counts.py`
"""

import numpy as np

from art_stn import cohen_l2_radius, pixeldp_l2_radius, renyi_l2_radius, top_two_bounds

counts = np.array([[9_500, 300, 200], [7_000, 2_000, 1_000], [5_200, 4_700, 100]])  # 10,000 samples each
bounds = top_two_bounds(counts, alpha=0.001)
ok = bounds.certified
sigma = 0.5
print("top class  p1_lower  p2_upper    Renyi    Cohen  PixelDP")
for i in range(len(counts)):
    if not ok[i]:
        print(f"{bounds.top[i]:>9}  {bounds.p1_lower[i]:.4f}    {bounds.p2_upper[i]:.4f}   abstain")
        continue
    args = (bounds.p1_lower[i], bounds.p2_upper[i], sigma)
    print(
        f"{bounds.top[i]:>9}  {args[0]:.4f}    {args[1]:.4f}   {renyi_l2_radius(*args):.4f}   "
        f"{cohen_l2_radius(*args):.4f}   {pixeldp_l2_radius(*args):.4f}"
    )
