"""The LED board adapter: lane messages rendered through the lot's templates, seen and heard on the LED board
emulator — over a real pty cable and through the camera's serialData — and its failures made visible."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from hil.emulators.led_board import LedBoard
from hil.wire import VirtualCable
from lanectl.adapters.led_board_display import DisplayError, LedBoardDisplay
from lanectl.config import ConfigError, load_config
from lanectl.config.devices import LaneDevices, LedBoardConfig
from lanectl.core import effects as fx
from lanectl.protocols.led_board import Colour
from tests.integration.test_camera_http import camera, rig

# The lane's own messages (lanectl.core.lane), as it emits them: a key and facts (amounts in fen, stays in minutes).
WELCOME = fx.Display("welcome", (("plate", "粤B12345"), ("message", "欢迎光临"), ("vehicle_class", "temporary")))
PAY = fx.Display("pay", (("plate", "粤B12345"), ("amount_fen", 500), ("stay_min", 185)))
PAID = fx.Display("paid", (("plate", "粤B12345"), ("amount_fen", 500)))
REFUSED = fx.Display("refused", (("plate", "粤B12345"), ("message", "黑名单车辆 禁止通行")))
FALLBACK = fx.Display("pay_fallback", (("plate", "粤B12345"), ("amount_fen", 500)))
FAULT = fx.Display("fault")


def board_cfg(**kw: object) -> LedBoardConfig:
    return LedBoardConfig(kind="led_board", **kw)


@pytest.fixture
def cable(tmp_path):
    a, b = str(tmp_path / "rig" / "led"), str(tmp_path / "rig" / "led-device")
    with VirtualCable(a, b) as c:
        yield c


async def test_lane_messages_on_a_serial_board(cable):
    display = LedBoardDisplay(board_cfg(port=cable.a_link, qr_url="https://pay.example/{lane}/{plate}"),
                              lane_id="out1")
    async with LedBoard(cable.b_link) as board:
        await display.show(WELCOME)
        await board.until(lambda: board.hears("欢迎光临"))
        assert board.lines == ["欢迎光临", "粤B12345"] and board.speech == ["欢迎光临 粤B12345"]
        assert board.screen[0].colour == Colour.GREEN

        await display.show(PAY)
        await board.until(lambda: board.hears("请缴费5元"))
        assert board.lines == ["粤B12345", "停车3小时5分 请缴费5元"] and board.screen[1].colour == Colour.YELLOW

        await display.show(FALLBACK)
        await board.until(lambda: board.qr is not None)
        assert board.lines == ["粤B12345", "请扫码缴费5元"] and board.qr == "https://pay.example/out1/粤B12345"

        await display.show(REFUSED)
        await display.show(FAULT)
        await board.until(lambda: board.hears("请联系管理员"))
        assert board.lines == ["道闸故障", "请联系管理员"] and board.screen[0].colour == Colour.RED
        assert board.hears("粤B12345 黑名单车辆 禁止通行")
    await display.aclose()
    assert board.rejected == [] and display.shown == 5 and display.fallbacks == 0


async def test_the_lots_templates_and_their_fallbacks(cable):
    cfg = board_cfg(port=cable.a_link, voice=False, lines=3,
                    templates={"paid": "{plate}|谢谢惠顾|一路平安", "pay": "{plate} 请缴{amount}",
                               "goodbye": "{plate}|慢走", "welcome": "{vehicle_class}|{message}"})
    display = LedBoardDisplay(cfg)
    async with LedBoard(cable.b_link) as board:
        await display.show(PAID)
        await board.until(lambda: board.sees("一路平安"))
        assert board.lines == ["粤B12345", "谢谢惠顾", "一路平安"]
        await display.show(PAY)
        await board.until(lambda: board.sees("请缴5元"))
        assert board.lines == ["粤B12345", "请缴5元", ""]  # unused lines are cleared
        # an operator release has no plate: the template cannot fill {plate}, the lane's wording is shown
        await display.show(fx.Display("goodbye", (("plate", ""),)))
        await board.until(lambda: board.lines[0] == "一路顺风")
        # a message without the field its template needs: the lane's wording, over the board's lines
        await display.show(fx.Display("welcome", (("plate", "粤B12345"), ("message", "月租车 剩余12天"))))
        await board.until(lambda: board.sees("剩余12天"))
        assert board.lines == ["月租车", "剩余12天", "粤B12345"]
        # a key nobody has words for: an error the runner logs, nothing sent (the board keeps its text)
        with pytest.raises(DisplayError, match="something_new"):
            await display.show(fx.Display("something_new"))
    await display.aclose()
    assert board.lines == ["月租车", "剩余12天", "粤B12345"]
    assert board.speech == [] and display.fallbacks == 2 and display.shown == 4


def test_templates_render_without_a_board():
    display = LedBoardDisplay(board_cfg(port="/dev/null", templates={"welcome": "{message}"}))
    assert display.render(WELCOME) == (["欢迎光临", ""], "欢迎光临")
    long = LedBoardDisplay(board_cfg(port="/dev/null", templates={"pay": "{plate}|" + "请缴费{amount}" * 40}))
    frames = long.frames(PAY)  # over one frame's 255 bytes: the lane's wording instead, no exception
    assert len(frames) == 1 and long.fallbacks == 1
    with pytest.raises(ValueError, match="no camera"):
        LedBoardDisplay(board_cfg(via_camera=True), None)


def test_a_template_typo_is_a_config_error_naming_the_key(example_config: Path):
    lane = example_config / "lanes" / "east-out.yaml"
    display = ("  display:\n    kind: led_board\n    port: /dev/ttyS3\n    templates:\n"
               "      pay: '{plate} 停车{stay} 请缴费{amout}'\n")
    lane.write_text(lane.read_text().replace("\nrules:", "\n" + display + "rules:", 1))
    with pytest.raises(ConfigError) as err:
        load_config(example_config)
    [msg] = err.value.problems
    assert "east-out.yaml" in msg and "devices.display" in msg and "templates" in msg
    assert "pay" in msg and "unknown placeholder {amout}" in msg and "amount" in msg


def test_display_sections_are_validated():
    with pytest.raises(ValidationError, match="unknown message"):
        board_cfg(port="/dev/ttyS3", templates={"welcom": "欢迎 {plate}"})
    with pytest.raises(ValidationError, match="expected '}'"):
        board_cfg(port="/dev/ttyS3", templates={"paid": "{plate 一路顺风"})
    with pytest.raises(ValidationError, match="GBK"):
        board_cfg(port="/dev/ttyS3", templates={"goodbye": "一路顺风 🚗"})
    with pytest.raises(ValidationError, match=r"unknown placeholder \{stay\}"):
        board_cfg(port="/dev/ttyS3", qr_url="https://pay.example/{stay}")
    with pytest.raises(ValidationError, match="exactly one of port"):
        board_cfg()
    with pytest.raises(ValidationError, match="exactly one of port"):
        board_cfg(port="/dev/ttyS3", via_camera=True)
    with pytest.raises(ValidationError, match="needs a camera"):
        LaneDevices.model_validate({"display": {"kind": "led_board", "via_camera": True}})
    d = LaneDevices.model_validate({"camera": {"kind": "vzenith_http"},
                                    "display": {"kind": "led_board", "via_camera": True}})
    assert (d.display.camera_channel, d.display.address, d.display.voice, d.display.templates) == (0, 0, True, {})


async def test_a_broken_board_raises_from_show_and_recovers(cable, tmp_path):
    missing = LedBoardDisplay(board_cfg(port=str(tmp_path / "no-such-tty")))
    with pytest.raises(DisplayError, match="no-such-tty"):
        await missing.show(WELCOME)

    display = LedBoardDisplay(board_cfg(port=cable.a_link), backoff_min_s=0.05)
    async with LedBoard(cable.b_link) as board:
        await display.show(WELCOME)
        await board.until(lambda: board.hears("欢迎光临"))
    cable.unplug()  # the USB adapter is pulled out
    with pytest.raises(DisplayError, match="Input/output error"):
        await display.show(PAY)
    with pytest.raises(DisplayError, match="next try in"):
        await display.show(PAY)  # within the backoff: not even tried
    assert display.fault is not None and display.failures == 1
    cable.plug()
    await asyncio.sleep(0.25)  # past the backoff
    async with LedBoard(cable.b_link) as board:
        await display.show(PAID)
        await board.until(lambda: board.hears("支付成功"))
    await display.aclose()
    assert display.fault is None


# -- through the camera ----------------------------------------------------------------------------------
async def test_messages_ride_in_the_camera_replies(tmp_path):
    board = LedBoard()
    async with rig(tmp_path) as lane, camera(lane, led_board=board) as cam:
        display = LedBoardDisplay(board_cfg(via_camera=True), lane.camera, lane_id="in1")
        lane.on_plate = lambda ev: lane.spawn(display.show(WELCOME))
        reply = await cam.car("粤B12345")  # the welcome goes back with this push's reply
        assert reply.status == 200 and not reply.opened
        assert board.lines == ["欢迎光临", "粤B12345"] and board.hears("欢迎光临 粤B12345")
        await display.show(PAID)  # later (a payment): the next heartbeat carries it
        assert not board.hears("支付成功")
        await cam.heartbeat()
        assert board.lines == ["粤B12345", "支付成功 一路顺风"]
        assert (await cam.heartbeat()).commands.serial_data == ()  # carried once
    assert {channel for channel, _ in cam.serial_out} == {0} and board.rejected == []


async def test_relay_and_board_share_the_push_reply(tmp_path):
    board = LedBoard()
    async with rig(tmp_path, relay_barrier=True) as lane, camera(lane, led_board=board, led_channel=1) as cam:
        barrier = lane.relay()
        display = LedBoardDisplay(board_cfg(via_camera=True, camera_channel=1, address=0), lane.camera)

        def decide(ev):  # as the runner executes an allowed entry: the message, then the OPEN
            lane.spawn(display.show(WELCOME if ev.plate == "粤B12345" else REFUSED))
            if ev.plate == "粤B12345":
                lane.spawn(barrier.open())

        lane.on_plate = decide
        allowed = await cam.car("粤B12345")
        refused = await cam.car("京A88888")  # message only: answered after the short settle, no OPEN
    assert allowed.opened and not refused.opened and cam.relay_opens == 1
    assert board.hears("欢迎光临 粤B12345") and board.hears("粤B12345 黑名单车辆 禁止通行")
    assert len(allowed.commands.serial_data) == 1 and len(refused.commands.serial_data) == 1
