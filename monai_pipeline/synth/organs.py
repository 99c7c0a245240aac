"""The organs, vessels, bowel and pelvic skeleton around the liver, as parts painted in layers.

Positions are body-centred LPS millimetres (x to the patient's left, y to the back, z to the head), scaled by the
abdominal cavity's semi-axes ``ca`` (left-right) and ``cb`` (front-back); ``top`` is the height of the liver's dome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monai_pipeline.synth.shapes import Ellipsoid, Tube, rotation

__all__ = ["CANCELLOUS_HU", "CORTICAL_HU", "FAT_HU", "GAS_HU", "Builder", "Part"]

FAT_HU, GAS_HU, CORTICAL_HU, CANCELLOUS_HU = -100.0, -950.0, 900.0, 400.0


@dataclass(frozen=True)
class Part:
    """An organ or a piece of one: ``hu`` within ``rim`` mm of its surface, ``core_hu`` deeper.

    ``mottle`` is the amplitude (HU) of a fine texture added to the core (arterial spleen, stool).
    """

    name: str
    shape: Ellipsoid | Tube
    hu: float
    core_hu: float
    rim: float = 0.0
    mottle: float = 0.0


class Builder:
    """Draws the parts of one patient from ``rng``, with the tissue values ``hu`` of its contrast phase."""

    def __init__(
        self, rng: np.random.Generator, cavity: tuple[float, float], spine_y: float, dz: float, hu: dict[str, float]
    ) -> None:
        self.rng, self.u = rng, rng.uniform
        self.ca, self.cb = cavity
        self.spine_y, self.dz, self.hu = spine_y, dz, hu
        self.oral = self.u() < 0.3  # positive oral contrast in the bowel
        self.bifurcation = -190.0 + dz + self.u(-15, 15)  # of the aorta, at the iliac crests

    def point(self, x: float, y: float, z: float, jitter: float = 6.0) -> np.ndarray:
        """A body point (z relative to the liver level) moved by up to ``jitter`` mm along each axis."""
        return np.array([x, y, z + self.dz]) + self.u(-jitter, jitter, 3)

    def ellipsoid(
        self,
        centre: Sequence[float],
        radii: Sequence[float],
        z_deg: float = 0.0,
        y_deg: float = 0.0,
        scale: float = 1.0,
    ) -> Ellipsoid:
        """An ellipsoid at ``centre`` (z relative to the liver level), its radii and turns jittered."""
        return Ellipsoid(
            centre=self.point(*centre),
            radii=np.asarray(radii, dtype=float) * self.u(0.9, 1.1, 3) * scale,
            axes=rotation(z_deg + self.u(-12, 12), self.u(-6, 6), y_deg + self.u(-6, 6)),
        )

    def chain(
        self,
        name: str,
        points: Sequence[np.ndarray],
        radii: Sequence[float],
        hu: float,
        core_hu: float,
        rim: float = 0.0,
        mottle: float = 0.0,
    ) -> list[Part]:
        """Tubes joining ``points`` in turn; ``radii`` has one radius per point."""
        return [
            Part(name, Tube(np.asarray(a, float), np.asarray(b, float), (ra, rb)), hu, core_hu, rim, mottle)
            for a, b, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:], strict=True)
        ]

    def content(self, colon: bool = False) -> tuple[float, float]:
        """HU and mottle of what a bowel loop holds: oral contrast, fluid, gas, stool or nothing (collapsed)."""
        r = self.u()
        if self.oral and r < 0.5:
            return self.u(150, 350), 0.0
        if colon:
            return (GAS_HU, 0.0) if r < 0.75 else (self.u(-150, -50), 150.0)
        if r < 0.7:
            return self.u(0, 20), 0.0
        return (GAS_HU, 0.0) if r < 0.85 else (self.hu["bowel_wall"], 0.0)

    def abdomen(self) -> list[Part]:
        """Psoas, kidneys, spleen, stomach, pancreas, duodenum, gallbladder, bowel, bladder and their vessels."""
        ca, cb, sy, hu, u = self.ca, self.cb, self.spine_y, self.hu, self.u
        parts: list[Part] = []
        for side in (-1, 1):
            path = [
                self.point(side * 28, sy + 2, -20),
                self.point(side * 45, sy - 2, -140),
                self.point(side * 55, sy - 8, self.bifurcation - 40 - self.dz),
                self.point(side * 0.6 * ca, -0.15 * cb, -320),
            ]
            parts += self.chain("psoas", path, [7, u(16, 22), u(20, 26), 17], hu["muscle"], hu["muscle"])
        for side, z, name in ((-1, -75.0, "kidney_right"), (1, -60.0, "kidney_left")):
            kidney = self.ellipsoid(
                (side * 0.6 * ca, sy + 5, z), (24, 21, 55), z_deg=-side * 25, y_deg=side * 12, scale=u(0.85, 1.15)
            )
            parts.append(Part(name, kidney, hu["cortex"], hu["medulla"], u(5, 7)))
            medial = -side * kidney.axes[:, 0] * kidney.radii[0] * 0.6  # the hilum faces the spine
            sinus = Ellipsoid(kidney.centre + medial, kidney.radii * [0.4, 0.45, 0.45], kidney.axes)
            parts.append(Part("renal_sinus", sinus, FAT_HU + 20, FAT_HU + 20))
            vein_hu = max(hu["ivc"], 0.6 * hu["cortex"])
            parts += self.chain(
                "renal_vein",
                [kidney.centre + 1.3 * medial, self.point(-24, sy - 26, z + 10, 2)],
                [5, 6],
                vein_hu,
                vein_hu,
            )
        spleen = self.ellipsoid(
            (0.68 * ca, 0.3 * cb, 25), (0.2 * ca, 0.5 * cb, 50), z_deg=u(20, 40), scale=u(0.8, 1.25)
        )
        parts.append(Part("spleen", spleen, hu["spleen"], hu["spleen"], mottle=hu["spleen_mottle"]))
        stomach = self.ellipsoid((0.35 * ca, -0.3 * cb, 30), (0.3 * ca, 0.4 * cb, 45), z_deg=20, scale=u(0.8, 1.15))
        fill = (u(150, 350), 0.0) if self.oral else ((u(0, 20), 0.0) if u() < 0.6 else (u(20, 50), 20.0))
        parts.append(Part("stomach", stomach, hu["bowel_wall"], fill[0], u(3, 5), fill[1]))
        gas = Ellipsoid(
            stomach.centre - stomach.axes[:, 1] * 0.55 * stomach.radii[1],
            stomach.radii * [0.55, 0.3, 0.55],
            stomach.axes,
        )
        parts.append(Part("stomach_gas", gas, GAS_HU, GAS_HU))
        pancreas = [
            self.point(-0.28 * ca, sy - 52, -70),
            self.point(-0.05 * ca, sy - 62, -45),
            self.point(0.3 * ca, sy - 48, -30),
            self.point(0.55 * ca, sy - 15, -10),
        ]
        parts += self.chain(
            "pancreas", pancreas, [u(14, 18), 11, 10, u(7, 10)], hu["pancreas"], hu["pancreas"], mottle=8.0
        )
        duodenum = [
            self.point(-0.1 * ca, -0.5 * cb, -30),
            self.point(-0.45 * ca, sy - 48, -55),
            self.point(-0.45 * ca, sy - 40, -105),
            self.point(0.05 * ca, sy - 52, -115),
            self.point(0.25 * ca, sy - 58, -85),
        ]
        core, mottle = self.content()
        parts += self.chain("duodenum", duodenum, [12] * 5, hu["bowel_wall"], core, u(2, 3), mottle)
        parts.append(Part("gallbladder", self.gallbladder(), hu["bowel_wall"], hu["bile"], 2.0))
        parts += self.vessels()
        parts += self.bowel()
        bladder = self.ellipsoid((0, -0.4 * cb, -320), (45, 38, 35), scale=u(0.6, 1.3))
        parts.append(Part("bladder", bladder, hu["muscle"], hu["urine"], u(2, 4)))
        return parts

    def gallbladder(self) -> Ellipsoid:
        """Under the liver's right lobe, fundus forward and down."""
        return self.ellipsoid(
            (-0.38 * self.ca, -0.45 * self.cb, -45), (15, 14, 35), z_deg=20, y_deg=0, scale=self.u(0.7, 1.2)
        )

    def vessels(self) -> list[Part]:
        """Portal confluence, splenic and superior mesenteric veins, the SMA and the iliac arteries and veins."""
        ca, cb, sy, hu = self.ca, self.cb, self.spine_y, self.hu
        self.confluence = self.point(-0.08 * ca, sy - 55, -45, 3)
        portal, aorta, ivc = hu["portal"], hu["aorta"], hu["ivc"]
        parts = self.chain(
            "splenic_vein",
            [self.confluence, self.point(0.3 * ca, sy - 40, -35), self.point(0.6 * ca, 0.15 * cb, 10)],
            [5, 5, 4],
            portal,
            portal,
        )
        parts += self.chain("smv", [self.confluence, self.point(-0.05 * ca, -0.2 * cb, -150)], [6, 4], portal, portal)
        parts += self.chain(
            "sma", [np.array([10, sy - 38, -35 + self.dz]), self.point(5, -0.25 * cb, -150)], [4, 3], aorta, aorta
        )
        z = self.bifurcation - self.dz
        for side in (-1, 1):
            artery = [
                np.array([8.0, sy - 28, self.bifurcation]),
                self.point(side * 0.35 * ca, sy - 25, z - 70),
                self.point(side * 0.72 * ca, -0.25 * cb, -345),
            ]
            vein = [
                np.array([-22.0, sy - 24, self.bifurcation - 10]),
                self.point(side * 0.32 * ca, sy - 12, z - 80),
                self.point(side * 0.66 * ca, -0.12 * cb, -345),
            ]
            parts += self.chain("iliac_artery", artery, [7, 6, 5], aorta, aorta)
            parts += self.chain("iliac_vein", vein, [8, 8, 7], ivc, ivc)
        return parts

    def bowel(self) -> list[Part]:
        """Colon round the edge of the cavity into the rectum, and loops of small bowel in the middle."""
        ca, cb, u, wall = self.ca, self.cb, self.u, self.hu["bowel_wall"]
        frame = [
            (-0.62 * ca, -0.25 * cb, -200),
            (-0.62 * ca, -0.05 * cb, -130),
            (-0.6 * ca, -0.2 * cb, -60),
            (0.0, -0.7 * cb, -95),
            (0.62 * ca, -0.35 * cb, -15),
            (0.68 * ca, 0.1 * cb, -40),
            (0.65 * ca, 0.05 * cb, -200),
            (0.3 * ca, -0.3 * cb, -265),
            (0.0, 0.5 * cb, -300),
            (0.0, 0.5 * cb, -420),
        ]
        points = [self.point(*p, jitter=12) for p in frame]
        parts: list[Part] = []
        for a in range(0, len(points) - 1, 3):  # each stretch of colon holds its own content
            core, mottle = self.content(colon=True)
            radius = u(16, 24)
            parts += self.chain("colon", points[a : a + 4], [radius] * len(points[a : a + 4]), wall, core, 2.0, mottle)
        low, high = np.array([-0.45 * ca, -0.8 * cb, -250]), np.array([0.5 * ca, 0.05 * cb, -70])
        for _ in range(int(self.rng.integers(5, 9))):
            core, _mottle = self.content()
            at, heading = low + (high - low) * u(0, 1, 3), self.rng.normal(size=3)
            path = [at + [0, 0, self.dz]]
            for _step in range(int(self.rng.integers(4, 8))):
                heading = heading / np.linalg.norm(heading) + 0.9 * self.rng.normal(size=3)
                at = np.clip(at + u(25, 40) * heading / np.linalg.norm(heading), low, high)
                path.append(at + [0, 0, self.dz])
            radius = u(8, 13)
            parts += self.chain("small_bowel", path, [radius] * len(path), wall, core, u(1.5, 3))
        return parts

    def late(self, top: float) -> list[Part]:
        """Painted over the lungs: aorta, vena cava, heart, pulmonary trunk, oesophagus, trachea and bronchi."""
        ca, cb, sy, hu, u = self.ca, self.cb, self.spine_y, self.hu, self.u
        top -= self.dz
        radius = u(10, 13)
        aorta = [
            np.array([8.0, sy - 28, self.bifurcation]),
            self.point(10, sy - 30, -40, 2),
            self.point(18, sy - 18, top + 40, 3),
            self.point(20, sy - 10, top + 170),
            self.point(5, -0.2 * cb, top + 200),
            self.point(0, -0.25 * cb, top + 90),
        ]
        parts = self.chain(
            "aorta", aorta, [radius, radius, radius + 1, radius + 2, radius + 3, radius + 4], hu["aorta"], hu["aorta"]
        )
        ivc = [
            np.array([-22.0, sy - 24, self.bifurcation - 10]),
            self.point(-24, sy - 26, -60, 2),
            self.point(-28, sy - 38, top - 10, 3),
            self.point(-0.15 * ca, -0.15 * cb, top + 40),
        ]
        self.ivc = self.chain("ivc", ivc, [u(10, 13)] * 4, hu["ivc"], hu["ivc"])
        heart = self.ellipsoid((0.15 * ca, -0.25 * cb, top + 55), (0.55 * ca, 0.6 * cb, 65), z_deg=30)
        parts += [*self.ivc, Part("heart", heart, hu["myocardium"], hu["heart_blood"], u(8, 12))]
        parts += self.chain(
            "pulmonary_trunk",
            [heart.centre + [0, 0, 30], self.point(0.1 * ca, -0.1 * cb, top + 160)],
            [13, 11],
            hu["heart_blood"],
            hu["heart_blood"],
        )
        gullet = [
            self.point(5, sy - 32, top + 400, 2),
            self.point(12, sy - 35, top),
            self.point(0.25 * ca, -0.1 * cb, top - 25),
        ]
        parts += self.chain("oesophagus", gullet, [7, 7, 8], hu["bowel_wall"], hu["bowel_wall"])
        carina = self.point(0, sy - 45, top + 175, 3)
        parts += self.chain("trachea", [carina + [0, 0, 300], carina], [9, 9], hu["muscle"], GAS_HU, 2.0)
        for side in (-1, 1):
            parts += self.chain(
                "bronchus", [carina, self.point(side * 55, sy - 35, top + 135)], [7, 5], hu["muscle"], GAS_HU, 1.5
            )
        return parts

    def pelvis(self) -> list[Part]:
        """Gluteal muscles, iliac wings, sacrum, hip joints, femora, pubic and ischial rami."""
        ca, cb, sy, u = self.ca, self.cb, self.spine_y, self.u
        muscle = self.hu["muscle"]
        parts: list[Part] = []
        for side in (-1, 1):
            gluteus = self.ellipsoid((side * 0.55 * ca, 0.65 * cb, -300), (60, 38, 90), z_deg=-side * 25)
            parts.append(Part("gluteus", gluteus, muscle, muscle))
        for side in (-1, 1):
            joint, crest = self.point(side * 42, sy + 25, -250), self.point(side * 0.92 * ca, -0.15 * cb, -240)
            along = (crest - joint) / np.linalg.norm(crest - joint)
            axes = np.column_stack([along, np.cross([0, 0, 1.0], along), [0, 0, 1.0]])
            wing = Ellipsoid((joint + crest) / 2, np.array([np.linalg.norm(crest - joint) / 2 + 8, u(6, 9), 52]), axes)
            parts.append(Part("ilium", wing, CORTICAL_HU, CANCELLOUS_HU, 2.0))
        sacrum = Ellipsoid(self.point(0, sy + 20, -265), np.array([48, u(14, 18), 60]), rotation(0, -25))
        parts.append(Part("sacrum", sacrum, CORTICAL_HU, CANCELLOUS_HU, 2.0))
        for side in (-1, 1):
            hip = self.point(side * 0.75 * ca, -0.1 * cb, -335, 3)
            head = u(21, 25)
            cup = hip + [-side * 9, 0, 4]  # the socket holds the head from inside and above
            parts.append(
                Part("acetabulum", Ellipsoid(cup, np.full(3, head + 6), np.eye(3)), CORTICAL_HU, CANCELLOUS_HU, 3.0)
            )
            parts.append(Part("hip_joint", Ellipsoid(hip, np.full(3, head + 2), np.eye(3)), muscle, muscle))
            trochanter = hip + [side * 45, 5, -20]
            femur = [hip, trochanter, trochanter + [0, 10, -350]]
            parts += self.chain("femur", femur, [15, 18, 14], CORTICAL_HU, CANCELLOUS_HU - 150, 4.0)
            parts.append(
                Part("femoral_head", Ellipsoid(hip, np.full(3, head), np.eye(3)), CORTICAL_HU, CANCELLOUS_HU, 2.0)
            )
            parts += self.chain(
                "pubis",
                [hip + [-side * 10, -15, -10], self.point(side * 8, -0.8 * cb, -370, 2)],
                [10, 9],
                CORTICAL_HU,
                CANCELLOUS_HU,
                2.0,
            )
            parts += self.chain(
                "ischium",
                [hip + [-side * 8, 15, -15], hip + [-side * 15, 35, -60]],
                [12, 14],
                CORTICAL_HU,
                CANCELLOUS_HU,
                2.0,
            )
        return parts

    def hepatic_vessels(self, lx: float, ly: float, top: float, ivc: Sequence[Part]) -> list[Part]:
        """Portal vein branches from the hilum and hepatic veins converging on the vena cava near the dome."""
        hu = self.hu
        hilum = self.point(-0.22 * lx, -0.12 * ly, -20, 5)
        portal = self.chain("portal_vein", [self.confluence, hilum], [7, 6], hu["portal"], hu["portal"])
        for branch, leaves in (
            ((-0.6, 0.1, -5), [(-0.75, -0.35, -30), (-0.7, 0.4, 20), (-0.55, 0.2, -60)]),
            ((0.05, -0.35, 0), [(0.25, -0.55, 30), (0.0, -0.6, 40), (-0.15, -0.5, -25)]),
        ):
            fork = self.point(branch[0] * lx, branch[1] * ly, branch[2], 10)
            portal += self.chain("portal_vein", [hilum, fork], [5.5, 4.5], hu["portal"], hu["portal"])
            for leaf in leaves:
                end = self.point(leaf[0] * lx, leaf[1] * ly, leaf[2], 12)
                portal += self.chain("portal_vein", [fork, end], [3.5, 1.8], hu["portal"], hu["portal"])
        cava = ivc[-2].shape
        root = cava.start + (cava.end - cava.start) * 0.92
        for leaf, radius in (((-0.75, 0.1, -90), 6), ((-0.35, -0.5, -100), 5), ((0.15, -0.55, -55), 4.5)):
            end = self.point(leaf[0] * lx, leaf[1] * ly, top - self.dz + leaf[2], 10)
            middle = (root + end) / 2
            side = middle + self.u(-25, 25, 3) + [0, 0, -15]
            portal += self.chain("hepatic_vein", [root, end], [radius, 2], hu["hepatic"], hu["hepatic"])
            portal += self.chain("hepatic_vein", [middle, side], [radius * 0.6, 1.5], hu["hepatic"], hu["hepatic"])
        return portal
