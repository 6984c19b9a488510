"""Filter design and layer schedule against the spec's tables (§1.4, §11.1, §11.2)."""

from __future__ import annotations

import numpy as np
import pytest

from sg3.modules.filters import design_lowpass_filter, kaiser_beta_for, synthesis_schedule


def _half(f):
    return np.asarray(f)[: (len(f) + 1) // 2]


def test_kaiser_beta_vectors():
    assert kaiser_beta_for(12, 12, 32) == pytest.approx(6.44372, abs=1e-5)
    assert kaiser_beta_for(24, 9.65040, 64) == pytest.approx(5.40442, abs=1e-4)


@pytest.mark.parametrize(
    "numtaps,cutoff,width,fs,expected",
    [
        (12, 2, 12, 32, [0.0007919021, 0.010018318, 0.038949523, 0.09241279, 0.15652561, 0.20130186]),
        (
            24,
            3.1748021,
            9.6503958,
            64,
            [
                -0.00033991,
                -0.00029957,
                0.00087359,
                0.00421339,
                0.01076619,
                0.021245,
                0.03567749,
                0.05317197,
                0.07190806,
                0.08939801,
                0.10297809,
                0.11040768,
            ],
        ),
        (
            12,
            5.0396842,
            21.9206316,
            64,
            [0.00052986, 0.00839137, 0.03629095, 0.09081732, 0.15813473, 0.20583576],
        ),
        (
            12,
            322.53979,
            378.92042,
            2048,
            [-0.00844171, -0.02586254, -0.01660515, 0.06022611, 0.19210461, 0.29857868],
        ),
        (12, 512, 236.69188, 2048, [0.02337425, 0.03444929, -0.0508807, -0.07861523, 0.13961044, 0.43206194]),
        (12, 128, 59.17297, 512, [0.02337425, 0.03444929, -0.0508807, -0.07861523, 0.13961044, 0.43206194]),
        (
            24,
            4,
            8,
            64,
            [
                -0.00163828,
                -0.00305529,
                -0.00371516,
                -0.00214536,
                0.00331233,
                0.01398208,
                0.03028362,
                0.05131236,
                0.0747529,
                0.09721614,
                0.1149508,
                0.12474386,
            ],
        ),
        (
            12,
            5.6568542,
            20.6862915,
            64,
            [1.3959712e-4, 6.6801887e-3, 3.3712786e-2, 8.9386232e-2, 1.5980484e-1, 2.1027637e-1],
        ),
    ],
)
def test_separable_filters_match_spec(numtaps, cutoff, width, fs, expected):
    f = design_lowpass_filter(numtaps, cutoff, width, fs)
    assert f.dtype == np.float32 and f.shape == (numtaps,)
    np.testing.assert_allclose(_half(f), expected, rtol=2e-5, atol=2e-8)
    np.testing.assert_allclose(f, f[::-1])
    assert f.sum() == pytest.approx(1.0, abs=1e-6)


def test_radial_filters_match_spec():
    f = design_lowpass_filter(12, 2, 12, 32, radial=True)
    assert f.shape == (12, 12) and f.dtype == np.float32
    assert f[5, 5] == pytest.approx(0.038754884, rel=1e-5)
    assert f[0, 0] == pytest.approx(8.4120967e-7, rel=1e-4)
    assert f[5, 0] == pytest.approx(2.0526213e-4, rel=1e-5) and f[0, 5] == pytest.approx(f[5, 0])
    np.testing.assert_allclose(
        f[0, :6], [8.412e-7, 1.0472e-5, 4.0278e-5, 9.4871e-5, 1.5996e-4, 2.0526e-4], rtol=1e-3
    )
    np.testing.assert_allclose(
        f[5, :6], [2.0526e-4, 0.00227863, 0.008198048, 0.018542157, 0.03053336, 0.038754884], rtol=1e-4
    )
    g = design_lowpass_filter(12, 90.509668, 74.980664, 512, radial=True)
    np.testing.assert_allclose(
        [g[5, 5], g[0, 0], g[5, 0], g[2, 3]],
        [0.09437117, 8.542366e-4, -3.0122146e-3, -7.4326457e-3],
        rtol=1e-5,
    )
    assert g.sum() == pytest.approx(1.0, abs=1e-6)


def test_filter_argument_checks():
    assert design_lowpass_filter(1, 2, 12, 32) is None
    with pytest.raises(ValueError, match="numtaps"):
        design_lowpass_filter(0, 2, 12, 32)
    with pytest.raises(ValueError, match="even"):
        design_lowpass_filter(11, 2, 12, 32, radial=True)
    with pytest.raises(ValueError, match="img_resolution"):
        synthesis_schedule(100, 3)


T1024 = [
    # name, in->out size, tmp sr, up, down, up taps, down taps, fc_out, ft_out, fh_out, padding, fp16
    ("L0_36_512", 36, 36, 32, 2, 2, 12, 12, 2.0, 4.2871, 6.0, (9, 8, 9, 8), False),
    ("L1_36_512", 36, 36, 32, 2, 2, 12, 12, 3.1748, 6.4980, 4.8252, (9, 8, 9, 8), False),
    ("L2_52_512", 36, 52, 64, 4, 2, 24, 12, 5.0397, 9.8492, 10.9603, (-6, -9, -6, -9), False),
    ("L3_52_512", 52, 52, 64, 2, 2, 12, 12, 8.0, 14.9285, 8.0, (9, 8, 9, 8), False),
    ("L4_84_512", 52, 84, 128, 4, 2, 24, 12, 12.6992, 22.6274, 19.3008, (-6, -9, -6, -9), False),
    ("L5_148_512", 84, 148, 256, 4, 2, 24, 12, 20.1587, 34.2968, 43.8413, (-6, -9, -6, -9), True),
    ("L6_148_512", 148, 148, 256, 2, 2, 12, 12, 32.0, 51.9842, 32.0, (9, 8, 9, 8), True),
    ("L7_276_323", 148, 276, 512, 4, 2, 24, 12, 50.7968, 78.7932, 77.2032, (-6, -9, -6, -9), True),
    ("L8_276_203", 276, 276, 512, 2, 2, 12, 12, 80.6349, 119.4282, 47.3651, (9, 8, 9, 8), True),
    ("L9_532_128", 276, 532, 1024, 4, 2, 24, 12, 128.0, 181.0193, 128.0, (-6, -9, -6, -9), True),
    ("L10_1044_81", 532, 1044, 2048, 4, 2, 24, 12, 203.1873, 274.3740, 308.8127, (-6, -9, -6, -9), True),
    ("L11_1044_51", 1044, 1044, 2048, 2, 2, 12, 12, 322.5398, 415.8732, 189.4602, (9, 8, 9, 8), True),
    ("L12_1044_32", 1044, 1044, 2048, 2, 2, 12, 12, 512.0, 630.3459, 118.3459, (9, 8, 9, 8), True),
    ("L13_1024_32", 1044, 1024, 2048, 2, 2, 12, 12, 512.0, 630.3459, 118.3459, (-11, -12, -11, -12), True),
    ("L14_1024_3", 1024, 1024, 1024, 1, 1, 1, 1, 512.0, 630.3459, 118.3459, (0, 0, 0, 0), True),
]


def test_schedule_1024_t_matches_table():
    layers = synthesis_schedule(1024, 3)["layers"]
    assert len(layers) == len(T1024)
    for spec, row in zip(layers, T1024):
        name, isz, osz, tmp, up, down, ut, dt, fc, ft, fh, pad, fp16 = row
        got = (
            spec.name,
            spec.in_size,
            spec.out_size,
            spec.tmp_sampling_rate,
            spec.up_factor,
            spec.down_factor,
        )
        assert got == (name, isz, osz, tmp, up, down)
        assert (spec.up_taps, spec.down_taps, spec.padding, spec.use_fp16) == (ut, dt, pad, fp16)
        assert spec.out_cutoff == pytest.approx(fc, abs=1e-4)
        assert spec.out_stopband == pytest.approx(ft, abs=1e-4)
        assert spec.out_half_width == pytest.approx(fh, abs=1e-4)


def test_schedule_1024_r_names_and_padding():
    layers = synthesis_schedule(1024, 3, 65536, 1024, conv_kernel=1, use_radial_filters=True)["layers"]
    names = "L0_36_1024 L1_36_1024 L2_52_1024 L3_52_1024 L4_84_1024 L5_148_1024 L6_148_1024 L7_276_645 "
    names += "L8_276_406 L9_532_256 L10_1044_161 L11_1044_102 L12_1044_64 L13_1024_64 L14_1024_3"
    assert [s.name for s in layers] == names.split()
    pads = {s.padding for s in layers}
    assert pads == {(11, 10, 11, 10), (-2, -5, -2, -5), (-9, -10, -9, -10), (0, 0, 0, 0)}
    assert [s.down_radial for s in layers] == [True] * 12 + [False] * 3


@pytest.mark.parametrize(
    "res,cbase,cmax,names",
    [
        (
            512,
            32768,
            512,
            "L0_36_512 L1_36_512 L2_52_512 L3_52_512 L4_84_512 L5_84_512 L6_148_512 L7_148_483 "
            "L8_276_323 L9_276_215 L10_532_144 L11_532_96 L12_532_64 L13_512_64 L14_512_3",
        ),
        (
            256,
            32768,
            512,
            "L0_36_512 L1_36_512 L2_36_512 L3_52_512 L4_52_512 L5_84_512 L6_84_512 L7_148_512 "
            "L8_148_512 L9_148_362 L10_276_256 L11_276_181 L12_276_128 L13_256_128 L14_256_3",
        ),
        (
            128,
            32768,
            512,
            "L0_36_512 L1_36_512 L2_36_512 L3_52_512 L4_52_512 L5_52_512 L6_84_512 L7_84_512 "
            "L8_84_512 L9_148_512 L10_148_456 L11_148_342 L12_148_256 L13_128_256 L14_128_3",
        ),
        (
            256,
            32768,
            1024,
            "L0_36_1024 L1_36_1024 L2_36_1024 L3_52_1024 L4_52_1024 L5_84_1024 L6_84_1024 "
            "L7_148_724 L8_148_512 L9_148_362 L10_276_256 L11_276_181 L12_276_128 L13_256_128 L14_256_3",
        ),
    ],
)
def test_layer_name_lists(res, cbase, cmax, names):
    assert [s.name for s in synthesis_schedule(res, 3, cbase, cmax)["layers"]] == names.split()


T256 = [  # name, in->out ch, in->out size, in->out sr, padding, crit, fp16 (§11.1, cbase 16384)
    ("L0_36_512", 512, 512, 36, 36, 16, 16, (9, 8, 9, 8), False, False),
    ("L1_36_512", 512, 512, 36, 36, 16, 16, (9, 8, 9, 8), False, False),
    ("L2_36_512", 512, 512, 36, 36, 16, 16, (9, 8, 9, 8), False, False),
    ("L3_52_512", 512, 512, 36, 52, 16, 32, (-6, -9, -6, -9), False, True),
    ("L4_52_512", 512, 512, 52, 52, 32, 32, (9, 8, 9, 8), False, True),
    ("L5_84_512", 512, 512, 52, 84, 32, 64, (-6, -9, -6, -9), False, True),
    ("L6_84_512", 512, 512, 84, 84, 64, 64, (9, 8, 9, 8), False, True),
    ("L7_148_362", 512, 362, 84, 148, 64, 128, (-6, -9, -6, -9), False, True),
    ("L8_148_256", 362, 256, 148, 148, 128, 128, (9, 8, 9, 8), False, True),
    ("L9_148_181", 256, 181, 148, 148, 128, 128, (9, 8, 9, 8), False, True),
    ("L10_276_128", 181, 128, 148, 276, 128, 256, (-6, -9, -6, -9), False, True),
    ("L11_276_91", 128, 91, 276, 276, 256, 256, (9, 8, 9, 8), False, True),
    ("L12_276_64", 91, 64, 276, 276, 256, 256, (9, 8, 9, 8), True, True),
    ("L13_256_64", 64, 64, 276, 256, 256, 256, (-11, -12, -11, -12), True, True),
    ("L14_256_3", 64, 3, 256, 256, 256, 256, (0, 0, 0, 0), True, True),
]


def test_schedule_256_t_table():
    sched = synthesis_schedule(256, 3, 16384, 512)
    got = [
        (
            s.name,
            s.in_channels,
            s.out_channels,
            s.in_size,
            s.out_size,
            s.in_sampling_rate,
            s.out_sampling_rate,
            s.padding,
            s.is_critically_sampled,
            s.use_fp16,
        )
        for s in sched["layers"]
    ]
    assert got == T256
    np.testing.assert_allclose(
        sched["half_widths"][[1, 9, 11, 14]], [5.1716, 18.7452, 37.4903, 29.5865], atol=1e-4
    )


def test_schedule_256_r_padding_and_radial():
    layers = synthesis_schedule(256, 3, 32768, 1024, conv_kernel=1, use_radial_filters=True)["layers"]
    assert [s.name for s in layers][7:10] == ["L7_148_724", "L8_148_512", "L9_148_362"]
    assert layers[3].padding == (-2, -5, -2, -5) and layers[13].padding == (-9, -10, -9, -10)
    assert layers[0].padding == (11, 10, 11, 10) and layers[14].padding == (0, 0, 0, 0)
    assert [s.down_radial for s in layers] == [True] * 12 + [False] * 3
