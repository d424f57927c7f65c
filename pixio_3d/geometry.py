"""Camera geometry shared by the reconstruction model, the losses, the metrics and the exporters.

Conventions (used everywhere in ``pixio_3d``):

- Cameras are OpenCV: x right, y down, z forward (the viewing direction).
- Poses are camera-to-world 4x4 matrices (``cam2world``): ``X_world = R @ X_cam + t``. In a
  multi-view sample, view 0 is the reference frame (see :func:`relative_poses`).
- Quaternions are unit and scalar-first ``(w, x, y, z)``, canonicalised to ``w >= 0``.
- Intrinsics are 3x3 pinhole matrices ``K`` in pixels; the centre of pixel (column c, row r)
  is at ``(c + 0.5, r + 0.5)`` (COLMAP / OpenGL continuous coordinates, so ``cx = W / 2`` for a
  centred principal point; Open3D's integer-centre convention would be ``(W - 1) / 2``).
- z-depth is the distance along the optical axis; depth along ray is the Euclidean distance from
  the camera centre: ``depth_along_ray = z_depth * ||K^-1 [u, v, 1]^T||``.

Every function is batched over leading dimensions and works for float32 and float64 tensors.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "average_point_norm",
    "centred_pinhole_from_rays",
    "depth_along_ray_from_z",
    "intrinsics_from_rays",
    "invert_pose",
    "matrix_to_quaternion",
    "patch_centres",
    "plausible_focal_range",
    "points_from_depth_along_ray",
    "points_from_z_depth",
    "pose_from_quaternion_translation",
    "quaternion_to_matrix",
    "quaternion_translation_from_pose",
    "ray_directions",
    "relative_poses",
    "transform_points",
    "umeyama",
]


def _check_last_dims(name: str, tensor: torch.Tensor, dims: tuple[int, ...]) -> None:
    if tensor.ndim < len(dims) or tuple(tensor.shape[-len(dims) :]) != dims:
        expected = ", ".join(str(d) for d in dims)
        raise ValueError(f"{name} must have shape (..., {expected}), got {tuple(tensor.shape)}")


def quaternion_to_matrix(quaternions: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` from quaternions ``(..., 4)`` in ``(w, x, y, z)`` order.

    The quaternions are normalised first, so any non-zero 4-vector is accepted.
    """
    _check_last_dims("quaternions", quaternions, (4,))
    q = quaternions / quaternions.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(matrices: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(..., 4)``, ``(w, x, y, z)`` with ``w >= 0``, from rotations ``(..., 3, 3)``.

    Each of the four standard closed forms divides by one quaternion component; the one with the
    largest component is used, which keeps the result accurate for every angle, 180 degrees
    included.
    """
    _check_last_dims("rotation matrices", matrices, (3, 3))
    m = matrices
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * (component)^2 for w, x, y, z
    four_squared = torch.stack(
        [
            1 + m00 + m11 + m22,
            1 + m00 - m11 - m22,
            1 - m00 + m11 - m22,
            1 - m00 - m11 + m22,
        ],
        dim=-1,
    )
    # clamped away from 0 so that gradients stay finite in the candidates that are not chosen
    four_squared = four_squared.clamp_min(torch.finfo(m.dtype).eps)
    two_abs = four_squared.sqrt()  # 2 * |component|
    denominator = 2 * two_abs
    # candidate k: component k is two_abs[k] / 2, the others come from off-diagonal sums
    candidates = torch.stack(
        [
            torch.stack([four_squared[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, four_squared[..., 1], m01 + m10, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m01 + m10, four_squared[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, four_squared[..., 3]], dim=-1),
        ],
        dim=-2,
    ) / denominator.unsqueeze(-1)
    best = two_abs.argmax(dim=-1, keepdim=True)
    index = best.unsqueeze(-1).expand(best.shape + (4,))
    quaternion = candidates.gather(-2, index).squeeze(-2)
    quaternion = quaternion / quaternion.norm(dim=-1, keepdim=True)
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def pose_from_quaternion_translation(
    quaternions: torch.Tensor, translations: torch.Tensor
) -> torch.Tensor:
    """4x4 poses ``(..., 4, 4)`` from quaternions ``(..., 4)`` (w, x, y, z) and translations ``(..., 3)``."""
    _check_last_dims("translations", translations, (3,))
    rotation = quaternion_to_matrix(quaternions)
    batch = torch.broadcast_shapes(rotation.shape[:-2], translations.shape[:-1])
    pose = torch.zeros(batch + (4, 4), dtype=rotation.dtype, device=rotation.device)
    pose[..., :3, :3] = rotation
    pose[..., :3, 3] = translations
    pose[..., 3, 3] = 1
    return pose


def quaternion_translation_from_pose(poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quaternions ``(..., 4)`` (w, x, y, z; w >= 0) and translations ``(..., 3)`` of ``(..., 4, 4)`` poses."""
    _check_last_dims("poses", poses, (4, 4))
    return matrix_to_quaternion(poses[..., :3, :3]), poses[..., :3, 3]


def invert_pose(poses: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid 4x4 poses ``(..., 4, 4)`` in closed form: ``[R^T, -R^T t]``."""
    _check_last_dims("poses", poses, (4, 4))
    rotation_t = poses[..., :3, :3].transpose(-1, -2)
    inverse = torch.zeros_like(poses)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -(rotation_t @ poses[..., :3, 3:4]).squeeze(-1)
    inverse[..., 3, 3] = 1
    return inverse


def _unnormalized_rays(intrinsics: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``K^-1 [c + 0.5, r + 0.5, 1]^T`` for every pixel: ``(..., H, W, 3)``."""
    _check_last_dims("intrinsics", intrinsics, (3, 3))
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    dtype, device = intrinsics.dtype, intrinsics.device
    rows = torch.arange(height, dtype=dtype, device=device) + 0.5
    cols = torch.arange(width, dtype=dtype, device=device) + 0.5
    inverse_k = torch.linalg.inv(intrinsics)[..., None, None, :, :]  # (..., 1, 1, 3, 3)
    # K^-1 [u, v, 1]^T as broadcast sums (one batched 3x3 product per pixel is ~10x slower)
    return (
        inverse_k[..., 0] * cols[:, None]
        + inverse_k[..., 1] * rows[:, None, None]
        + inverse_k[..., 2]
    )


def ray_directions(intrinsics: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Unit ray directions ``(..., H, W, 3)`` in the camera frame through every pixel centre."""
    rays = _unnormalized_rays(intrinsics, height, width)
    return rays / rays.norm(dim=-1, keepdim=True)


def points_from_depth_along_ray(rays: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Camera-frame points ``(..., H, W, 3)`` from unit rays ``(..., H, W, 3)`` and depth along ray ``(..., H, W)``."""
    _check_last_dims("rays", rays, tuple(rays.shape[-3:-1]) + (3,))
    if depth.shape[-2:] != rays.shape[-3:-1]:
        raise ValueError(
            f"depth (..., H, W) {tuple(depth.shape)} does not match rays {tuple(rays.shape)}"
        )
    return rays * depth.unsqueeze(-1)


def depth_along_ray_from_z(z_depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Depth along ray ``(..., H, W)`` from z-depth ``(..., H, W)`` and intrinsics ``(..., 3, 3)``."""
    if z_depth.ndim < 2:
        raise ValueError(f"z_depth must have shape (..., H, W), got {tuple(z_depth.shape)}")
    rays = _unnormalized_rays(intrinsics, z_depth.shape[-2], z_depth.shape[-1])
    return z_depth * rays.norm(dim=-1) / rays[..., 2]


def points_from_z_depth(z_depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Camera-frame points ``(..., H, W, 3)`` from z-depth ``(..., H, W)``: ``z * K^-1 [u, v, 1]^T``."""
    if z_depth.ndim < 2:
        raise ValueError(f"z_depth must have shape (..., H, W), got {tuple(z_depth.shape)}")
    rays = _unnormalized_rays(intrinsics, z_depth.shape[-2], z_depth.shape[-1])
    return rays / rays[..., 2:3] * z_depth.unsqueeze(-1)


def transform_points(transforms: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply 4x4 transforms to points: ``R @ p + t``; output has the shape of ``points``.

    ``transforms`` is ``B + (4, 4)`` and ``points`` is ``B + P + (3,)``: the batch dims ``B`` of
    the transforms line up with the leading dims of the points (broadcasting allowed) and the
    remaining point dims ``P`` (e.g. ``(N,)`` or ``(H, W)``) share one transform.
    """
    _check_last_dims("transforms", transforms, (4, 4))
    _check_last_dims("points", points, (3,))
    num_point_dims = points.ndim - 1 - (transforms.ndim - 2)
    if num_point_dims < 0:
        raise ValueError(
            f"points {tuple(points.shape)} need at least as many leading dims as the transforms "
            f"{tuple(transforms.shape)} have batch dims"
        )
    batch = transforms.shape[:-2]
    point_dims = points.shape[points.ndim - 1 - num_point_dims : -1]
    # the point dims flattened into one: one (N, 3) @ (3, 3) product per transform
    flat = points.reshape(points.shape[: len(batch)] + (-1, 3))
    moved = flat @ transforms[..., :3, :3].transpose(-1, -2) + transforms[..., None, :3, 3]
    return moved.reshape(moved.shape[:-2] + point_dims + (3,))


def relative_poses(cam2world: torch.Tensor) -> torch.Tensor:
    """Poses ``(..., V, 4, 4)`` re-expressed in camera 0's frame: ``T_0^-1 @ T_i`` (view 0 -> identity)."""
    _check_last_dims("cam2world", cam2world, (4, 4))
    if cam2world.ndim < 3 or cam2world.shape[-3] < 1:
        raise ValueError(f"cam2world must have shape (..., V, 4, 4), got {tuple(cam2world.shape)}")
    return invert_pose(cam2world[..., :1, :, :]) @ cam2world


def intrinsics_from_rays(rays: torch.Tensor) -> torch.Tensor:
    """Least-squares pinhole intrinsics ``(..., 3, 3)`` (fx, fy, cx, cy; no skew) from rays ``(..., H, W, 3)``.

    Fits ``u = fx * x/z + cx`` and ``v = fy * y/z + cy`` over all pixels with ``z > 0`` (pixel
    centres at ``+0.5``); the rays need not be unit length.
    """
    _check_last_dims("rays", rays, tuple(rays.shape[-3:-1]) + (3,))
    height, width = rays.shape[-3], rays.shape[-2]
    dtype, device = rays.dtype, rays.device
    rows = torch.arange(height, dtype=dtype, device=device) + 0.5
    cols = torch.arange(width, dtype=dtype, device=device) + 0.5
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    forward = rays[..., 2]
    weight = (forward > 1e-6).to(dtype)
    safe_forward = torch.where(weight > 0, forward, torch.ones_like(forward))
    slope_x = rays[..., 0] / safe_forward * weight
    slope_y = rays[..., 1] / safe_forward * weight

    def fit(slope: torch.Tensor, pixel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = weight.sum(dim=(-2, -1)).clamp_min(1)
        mean_slope = slope.sum(dim=(-2, -1)) / count
        mean_pixel = (pixel * weight).sum(dim=(-2, -1)) / count
        centered = (slope - mean_slope[..., None, None]) * weight
        covariance = (centered * pixel).sum(dim=(-2, -1))
        variance = (centered * centered).sum(dim=(-2, -1)).clamp_min(torch.finfo(dtype).tiny)
        focal = covariance / variance
        return focal, mean_pixel - focal * mean_slope

    fx, cx = fit(slope_x, u)
    fy, cy = fit(slope_y, v)
    intrinsics = torch.zeros(rays.shape[:-3] + (3, 3), dtype=dtype, device=device)
    intrinsics[..., 0, 0], intrinsics[..., 0, 2] = fx, cx
    intrinsics[..., 1, 1], intrinsics[..., 1, 2] = fy, cy
    intrinsics[..., 2, 2] = 1
    return intrinsics


# fields of view of a photo's longer side that a camera can have (a fisheye's 180 is not a
# pinhole); a focal length outside them is a broken prediction or a degenerate adjustment
PLAUSIBLE_FIELD_OF_VIEW_DEGREES = (10.0, 150.0)
# COLMAP's start for a camera without a focal length prior: 1.2 x the longer side
DEFAULT_FOCAL_FACTOR = 1.2


def plausible_focal_range(height: int, width: int) -> tuple[float, float]:
    """The focal lengths in pixels ``(low, high)`` that give the longer side of an image of
    ``height x width`` a field of view in :data:`PLAUSIBLE_FIELD_OF_VIEW_DEGREES`."""
    long_side = max(height, width)
    widest, narrowest = (math.radians(d) / 2 for d in reversed(PLAUSIBLE_FIELD_OF_VIEW_DEGREES))
    return long_side / (2 * math.tan(widest)), long_side / (2 * math.tan(narrowest))


def centred_pinhole_from_rays(rays: torch.Tensor) -> torch.Tensor:
    """The pinhole ``(..., 3, 3)`` with square pixels and the principal point at the image
    centre (COLMAP's ``SIMPLE_PINHOLE`` as it starts one) closest to rays ``(..., H, W, 3)``:
    the one focal length ``f`` that fits ``u - W/2 = f x/z`` and ``v - H/2 = f y/z`` over all
    pixels with ``z > 0`` in least squares (pixel centres at ``+0.5``). Where that focal length
    is not plausible (:func:`plausible_focal_range`: an untrained network's rays) it is COLMAP's
    start instead, :data:`DEFAULT_FOCAL_FACTOR` x the longer side."""
    _check_last_dims("rays", rays, tuple(rays.shape[-3:-1]) + (3,))
    height, width = rays.shape[-3], rays.shape[-2]
    dtype, device = rays.dtype, rays.device
    cols = torch.arange(width, dtype=dtype, device=device) + 0.5 - width / 2
    rows = (torch.arange(height, dtype=dtype, device=device) + 0.5 - height / 2)[:, None]
    forward = rays[..., 2]
    usable = forward > 1e-6
    safe_forward = torch.where(usable, forward, torch.ones_like(forward))
    slope_x = torch.where(usable, rays[..., 0] / safe_forward, 0)
    slope_y = torch.where(usable, rays[..., 1] / safe_forward, 0)
    numerator = (cols * slope_x + rows * slope_y).sum(dim=(-2, -1))
    denominator = (slope_x * slope_x + slope_y * slope_y).sum(dim=(-2, -1))
    focal = numerator / denominator.clamp_min(torch.finfo(dtype).tiny)
    low, high = plausible_focal_range(height, width)
    plausible = torch.isfinite(focal) & (focal >= low) & (focal <= high)
    focal = torch.where(plausible, focal, DEFAULT_FOCAL_FACTOR * max(height, width))
    intrinsics = torch.zeros(rays.shape[:-3] + (3, 3), dtype=dtype, device=device)
    intrinsics[..., 0, 0] = intrinsics[..., 1, 1] = focal
    intrinsics[..., 0, 2], intrinsics[..., 1, 2] = width / 2, height / 2
    intrinsics[..., 2, 2] = 1
    return intrinsics


def average_point_norm(points: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Euclidean norm ``(...,)`` of the valid points ``(..., N, 3)`` (mask ``(..., N)``).

    This is MapAnything's / DUSt3R's "avg-dis" normalisation factor. Flatten views and pixels into
    ``N`` to get one factor per scene. Returns 0 where no point is valid.
    """
    _check_last_dims("points", points, (3,))
    norms = points.norm(dim=-1)
    if valid is None:
        return norms.mean(dim=-1)
    if valid.shape != norms.shape:
        raise ValueError(
            f"valid {tuple(valid.shape)} must match points[..., 0] {tuple(norms.shape)}"
        )
    valid = valid.to(norms.dtype)
    return (norms * valid).sum(dim=-1) / valid.sum(dim=-1).clamp_min(1)


def patch_centres(maps: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Per-pixel maps ``(B, V, H, W, C)`` sampled at the centre pixel of every patch of a
    ``grid = (h, w)`` patch grid (row ``i * p + p // 2``): ``(B, V, h * w, C)``, row-major."""
    height, width = maps.shape[2:4]
    if height % grid[0] or width % grid[1]:
        raise ValueError(f"a {grid[0]}x{grid[1]} patch grid does not tile {height}x{width} maps")
    patch_h, patch_w = height // grid[0], width // grid[1]
    rows = torch.arange(grid[0], device=maps.device) * patch_h + patch_h // 2
    cols = torch.arange(grid[1], device=maps.device) * patch_w + patch_w // 2
    return maps[:, :, rows][:, :, :, cols].flatten(2, 3)


def umeyama(
    source: torch.Tensor,
    target: torch.Tensor,
    with_scale: bool = True,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares similarity (or rigid) transform with ``target ≈ scale * R @ source + t``.

    ``source`` and ``target`` are corresponding points ``(N, 3)``, ``N >= 2`` (the rotation is
    unique only for ``N >= 3`` non-collinear points); ``weights (N,)``, non-negative, weigh the
    pairs (all equal when None). Returns ``scale`` (0-dim tensor; 1 when ``with_scale`` is
    False), ``R (3, 3)`` (a proper rotation) and ``t (3,)``, computed in float64 and returned in
    the dtype of ``source`` (Umeyama 1991; Horn/Kabsch when ``with_scale=False``).
    """
    if source.ndim != 2 or source.shape[-1] != 3 or source.shape != target.shape:
        raise ValueError(
            f"umeyama needs source and target of the same shape (N, 3), got "
            f"{tuple(source.shape)} and {tuple(target.shape)}"
        )
    if source.shape[0] < 2:
        raise ValueError(f"umeyama needs at least 2 point pairs, got {source.shape[0]}")
    x = source.to(torch.float64)
    y = target.to(torch.float64)
    if weights is None:
        w = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64, device=x.device)
    else:
        if weights.shape != x.shape[:1] or bool((weights < 0).any()):
            raise ValueError(
                f"umeyama weights must be non-negative of shape ({x.shape[0]},), "
                f"got {tuple(weights.shape)}"
            )
        w = weights.to(torch.float64)
        if w.sum() <= 0:
            raise ValueError("umeyama: all weights are zero")
        w = w / w.sum()
    mean_x, mean_y = w @ x, w @ y
    xc, yc = x - mean_x, y - mean_y
    variance_x = (w * (xc * xc).sum(dim=1)).sum()
    if with_scale and variance_x <= 0:
        raise ValueError("umeyama: all source points coincide, the scale is undefined")
    covariance = (yc * w[:, None]).T @ xc
    u, singular, vh = torch.linalg.svd(covariance)
    sign = torch.ones(3, dtype=torch.float64, device=x.device)
    if torch.linalg.det(u) * torch.linalg.det(vh) < 0:
        sign[2] = -1
    rotation = u @ torch.diag(sign) @ vh
    if with_scale:
        scale = (singular * sign).sum() / variance_x
    else:
        scale = torch.ones((), dtype=torch.float64, device=x.device)
    translation = mean_y - scale * rotation @ mean_x
    dtype = source.dtype
    return scale.to(dtype), rotation.to(dtype), translation.to(dtype)
