"""The Depth Anything 3 network in localdepth's calling convention (:mod:`localdepth.networks`).

``network(pixel_values, same_scene=False)`` with ``pixel_values (N, 3, h, w)`` (ImageNet-normalised,
sides multiples of 14):

* ``same_scene=False``: ``N`` independent single-view predictions;
* ``same_scene=True``: the ``N`` images are views of one scene, predicted together (the views
  attend to each other; poses share one world frame, that of the reference view).

Returns ``depth (N, h, w)``; the any-view networks add ``confidence (N, h, w)``,
``intrinsics (N, 3, 3)`` (pixels of the ``h x w`` input, pixel centres at integer coordinates: the
principal point the network puts at the image centre is ``((w-1)/2, (h-1)/2)``) and
``camera_from_world (N, 4, 4)`` (OpenCV axes). ``rays=True`` adds the head's ray map
``rays (N, 8h/14, 8w/14, 6)`` and ``ray_confidence``. Known cameras (``camera_from_world`` and
``intrinsics`` on the input grid) replace the learnt camera tokens, as upstream; the returned
cameras are always the decoded ones.

The raw depth is the network's own: relative for the any-view and Mono networks, and for Metric
the depth a camera of focal length 300 px would see (the estimator turns it into metres).
Mono and Metric predict a sky map; sky pixels get the 99th percentile of the other pixels' depth,
as upstream (which takes that percentile over a random sample of 100k pixels; here, all of them).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import Backbone
from .camera import CameraDec, CameraEnc, decode_pose, to_pixel_centres
from .config import Architecture
from .heads import DPT, DualDPT

SKY_THRESHOLD = 0.3  # sky map values at or over this are sky
MIN_PIXELS_FOR_SKY = 10  # fewer sky (or non-sky) pixels than this: leave the depth alone
QUANTILE_LIMIT = 1 << 24  # torch.quantile's largest input


class DepthAnything3Network(nn.Module):
    """Backbone, head and (for the any-view networks) camera encoder and decoder of one architecture."""

    extra_outputs = True

    def __init__(self, arch: Architecture, model_name: str = ""):
        super().__init__()
        self.arch = arch
        self.model_name = model_name
        self.backbone = Backbone(arch)
        head = DualDPT if arch.head == "dualdpt" else DPT
        self.head = head(arch.head_dim_in, arch.head_features, arch.head_out_channels)
        #: a CUDA graph can capture the forward pass: not for the single-view networks, whose sky fill
        #: reads pixel counts on the host
        self.capturable = arch.head == "dualdpt"
        if arch.camera:
            self.cam_enc = CameraEnc(arch.embed_dim)
            self.cam_dec = CameraDec(arch.head_dim_in)

    @property
    def backbone_dtype(self) -> torch.dtype:
        return self.backbone.pretrained.pos_embed.dtype

    def forward(self, pixel_values: torch.Tensor, *, same_scene: bool = False,
                reference_strategy: str = "saddle_balanced", camera_from_world: torch.Tensor | None = None,
                intrinsics: torch.Tensor | None = None, rays: bool = False) -> dict[str, torch.Tensor]:
        n, _, height, width = pixel_values.shape
        views = pixel_values[None] if same_scene else pixel_values[:, None]  # (B, S, 3, h, w)
        camera_tokens = None
        if camera_from_world is not None:
            if not self.arch.camera:
                raise ValueError(f"{self.model_name or 'this network'} takes no cameras")
            shape = views.shape[:2]
            camera_tokens = self.cam_enc(camera_from_world.float().reshape(shape + (4, 4)),
                                         intrinsics.float().reshape(shape + (3, 3)), height, width)
        features = self.backbone(views.to(self.backbone_dtype), camera_tokens, reference_strategy)
        # the heads and the camera decoder run in fp32 whatever the backbone's precision, as upstream
        patch_tokens = [f[0].flatten(0, 1).float() for f in features]
        maps = self.head(patch_tokens, height, width)
        out = {"depth": maps["depth"]}
        if "confidence" in maps:
            out["confidence"] = maps["confidence"]
        if "sky" in maps:  # per scene: all views together, or each image on its own
            scenes = [slice(0, n)] if same_scene else [slice(i, i + 1) for i in range(n)]
            out["depth"] = torch.cat([_sky_to_far(maps["depth"][s], maps["sky"][s]) for s in scenes])
        if self.arch.camera:  # decoded from the camera tokens, given cameras or not (as upstream)
            encoding = self.cam_dec(features[-1][1].flatten(0, 1).float())
            out["camera_from_world"], K = decode_pose(encoding, height, width)
            out["intrinsics"] = to_pixel_centres(K)
        if rays and "rays" in maps:
            out["rays"], out["ray_confidence"] = maps["rays"], maps["ray_confidence"]
        assert out["depth"].shape[0] == n
        return out


def _sky_to_far(depth: torch.Tensor, sky: torch.Tensor) -> torch.Tensor:
    """Sky pixels (``sky >= 0.3``) of one scene set to the 99th percentile of its other pixels,
    unless either set has 10 pixels or fewer."""
    ground = sky < SKY_THRESHOLD
    if int(ground.sum()) <= MIN_PIXELS_FOR_SKY or int((~ground).sum()) <= MIN_PIXELS_FOR_SKY:
        return depth
    values = depth[ground]
    if values.numel() > QUANTILE_LIMIT:
        values = values[:: -(-values.numel() // QUANTILE_LIMIT)]
    far = torch.quantile(values.float(), 0.99).to(depth.dtype)
    return torch.where(ground, depth, far)

