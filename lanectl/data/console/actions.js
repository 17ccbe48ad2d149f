// The booth's other actions on a lane card: refuse the car, correct a misread plate (the cars inside it may be
// are offered as buttons), admit the car held at an entry. console.js calls window.laneActions(card, view) at
// the end of each render; everything else is here (routes: lanectl/adapters/console/booth.py). Each action names
// the car the operator saw (record_id): if another operator was first, the lane says so and nothing happens.
"use strict";

const ACTION_TEXT = {
  zh: {
    refuse: "拒绝放行", correct: "更正车牌", admit: "允许入场", held: "待处理车辆", held_unreadable: "车牌无法识别",
    read_as: "识别为 {p}", maybe: "可能是：", entered_at: "{t} 从 {l} 入场", plate: "正确车牌",
    plate_optional: "车牌（有则填）", reason: "原因", confirm: "确认", cancel: "取消",
    title_refuse: "拒绝放行", title_correct: "更正车牌", title_admit: "允许入场",
    need_reason: "请填写原因", need_plate: "请填写车牌",
    refused: "已拒绝，道闸保持关闭", corrected_due: "车牌已更正为 {p}，应收 ¥{y}", corrected_free: "车牌已更正为 {p}，无需现场缴费，道闸抬起",
    corrected_entry: "车牌已更正为 {p}", admitted: "已允许入场，道闸抬起", candidates: "场内没有 {p}，可能是：{l}",
    no_match: "场内没有 {p} 的入场记录：可拒绝，或说明原因放行", nothing_waiting: "该车道没有待处理的车辆",
    already_opening: "道闸已在抬起，未重复操作", car_gone: "该车已被处理（{m}），未操作", not_delivered: "道闸未确认：{m}",
    error: "失败：{m}",
    gone: { refused: "已被 {w} 拒绝", released: "已被 {w} 放行", admitted: "已被 {w} 允许入场", paid: "已支付",
            abandoned: "已离开" },
  },
  en: {
    refuse: "Refuse", correct: "Correct plate", admit: "Admit", held: "Car held", held_unreadable: "plate unreadable",
    read_as: "read as {p}", maybe: "Maybe:", entered_at: "entered {t} at {l}", plate: "Right plate",
    plate_optional: "Plate (if it has one)", reason: "Reason", confirm: "Confirm", cancel: "Cancel",
    title_refuse: "Refuse the car", title_correct: "Correct the plate", title_admit: "Admit the car",
    need_reason: "A reason is required", need_plate: "A plate is required",
    refused: "Refused: the barrier stays down", corrected_due: "Plate corrected to {p}: due ¥{y}",
    corrected_free: "Plate corrected to {p}: nothing to pay here, the barrier opens", corrected_entry: "Plate corrected to {p}",
    admitted: "Admitted: the barrier opens", candidates: "No {p} inside; maybe: {l}",
    no_match: "No entry for {p}: refuse, or release with a reason", nothing_waiting: "No car waiting at this lane",
    already_opening: "The barrier is already opening: nothing done", car_gone: "Already dealt with ({m}): nothing done",
    not_delivered: "the barrier did not confirm: {m}", error: "Failed: {m}",
    gone: { refused: "refused by {w}", released: "released by {w}", admitted: "admitted by {w}", paid: "paid",
            abandoned: "gone" },
  },
};

(() => {
  const at = (key, args = {}) => String(ACTION_TEXT[lang][key] ?? key).replace(/\{(\w+)\}/g, (_, k) => args[k] ?? "");
  const found = new Map();  // lane id -> candidates a correction answered (shown with the view's own)
  let dialog = null;        // {lane, action, record_id} while the dialog is open

  // what the lane can be asked now, for the car the page shows
  function actionable(view) {
    const waiting = view.direction === "exit" && view.phase === "awaiting_payment" && view.car;
    const held = view.direction === "entry" && view.phase === "idle" && view.held;
    return { refuse: !!(waiting || held), correct: !!(waiting || held), admit: !!held,
             record_id: waiting ? view.car.record_id : held ? view.held.record_id : "" };
  }

  function button(cls, text, onClick) {
    const b = document.createElement("button");
    b.type = "button"; b.className = cls; b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  function candidateButtons(laneId, list) {
    return list.map((c) => {
      const b = button("candidate", c.plate, () => send(laneId, "correct", { plate: c.plate }));
      b.title = at("entered_at", { t: (c.entered_at || "").slice(0, 16).replace("T", " "), l: c.lane_id });
      return b;
    });
  }

  window.laneActions = (card, view) => {
    const box = card.querySelector(".actions");
    let mine = box.querySelector(".booth-buttons");
    if (!mine) {
      mine = document.createElement("span");
      mine.className = "booth-buttons";
      for (const action of ["refuse", "correct", "admit"]) {
        mine.appendChild(button(action, "", () => openBooth(card.dataset.lane, action)));
      }
      box.appendChild(mine);
      const info = document.createElement("div");
      info.className = "booth";
      box.before(info);
    }
    const can = actionable(view);
    for (const action of ["refuse", "correct", "admit"]) {
      const b = mine.querySelector(`.${action}`);
      b.textContent = at(action);
      b.disabled = !can[action];
      b.hidden = action === "admit" && view.direction !== "entry";
    }
    // the car held at an entry, or the reading and the cars it may be of an exit car with no stay found
    const info = card.querySelector(".booth");
    const parts = [];
    if (can.admit) {
      const h = view.held;
      const line = document.createElement("p");
      line.className = "held";
      line.textContent = `${at("held")}: ${h.reason === "unreadable_plate" ? at("held_unreadable") + " · " + at("read_as", { p: h.plate }) : h.plate}`;
      parts.push(line);
    }
    const car = view.car;
    if (can.refuse && car && car.record_id === can.record_id) {
      const list = [...(car.candidates || [])];
      (found.get(view.lane) || []).forEach((c) => { if (!list.some((o) => o.plate === c.plate)) list.push(c); });
      if (car.read_plate) {
        const line = document.createElement("p");
        line.className = "read-plate";
        line.textContent = at("read_as", { p: car.read_plate });
        parts.push(line);
      }
      if (list.length) {
        const line = document.createElement("p");
        line.className = "candidates";
        line.append(at("maybe"), " ", ...candidateButtons(view.lane, list));
        parts.push(line);
      }
    }
    info.replaceChildren(...parts);
  };

  function openBooth(laneId, action) {
    const view = lanes.get(laneId);
    if (!view) return;
    const can = actionable(view);
    dialog = { lane: laneId, action, record_id: can.record_id };
    const d = document.getElementById("booth-dialog");
    const form = document.getElementById("booth-form");
    d.querySelector(".title").textContent = at(`title_${action}`);
    d.querySelector(".lane-name").textContent = view.name;
    const car = view.car && view.car.record_id === can.record_id ? view.car : view.held;
    d.querySelector(".car").textContent = car ? car.plate : "";
    form.querySelector(".plate-row").hidden = action === "refuse";
    form.querySelector(".reason-row").hidden = action === "correct";
    form.querySelector(".plate-label").textContent = at(action === "admit" ? "plate_optional" : "plate");
    form.querySelector(".reason-label").textContent = at("reason");
    form.querySelector("button[type=submit]").textContent = at("confirm");
    document.getElementById("booth-cancel").textContent = at("cancel");
    form.plate.value = "";
    form.reason.value = "";
    const list = action === "correct" && view.car ? [...(view.car.candidates || []), ...(found.get(laneId) || [])] : [];
    d.querySelector(".candidates").replaceChildren(...list.map((c) => button("candidate", c.plate, () => {
      form.plate.value = c.plate;
    })));
    document.getElementById("booth-error").textContent = "";
    d.showModal();
  }

  async function submitBooth(event) {
    event.preventDefault();
    const form = document.getElementById("booth-form");
    const { lane: laneId, action } = dialog;
    const body = {};
    if (action !== "correct") {
      body.reason = form.reason.value.trim();
      if (!body.reason) { document.getElementById("booth-error").textContent = at("need_reason"); return; }
    }
    if (action !== "refuse" && form.plate.value.trim()) body.plate = form.plate.value.trim();
    if (action === "correct" && !body.plate) { document.getElementById("booth-error").textContent = at("need_plate"); return; }
    document.getElementById("booth-dialog").close();
    await send(laneId, action, body);
  }

  function goneText(message) {
    const m = /already (\w+)(?: by (.+))?$/.exec(message || "");
    return m ? String(ACTION_TEXT[lang].gone[m[1]] || m[1]).replace("{w}", m[2] || "") : message;
  }

  // the release dialog (console.js) words a car already dealt with the same way
  window.boothGoneText = (message) => at("car_gone", { m: goneText(message) });

  async function send(laneId, action, body) {
    const view = lanes.get(laneId);
    const recordId = dialog && dialog.lane === laneId ? dialog.record_id : view ? actionable(view).record_id : "";
    dialog = null;
    if (recordId) body.record_id = recordId;
    const { status, data } = await api("POST", `/console/lanes/${encodeURIComponent(laneId)}/${action}`, body);
    if (status === 401) { loggedOut(t("session_ended")); return; }
    if (status === 200 && data.outcome === "corrected") found.delete(laneId);
    if (status === 200 && data.outcome === "candidates") found.set(laneId, data.candidates);
    const cls = data.done && !(status === 200 && data.opened === false) ? "ok" : "refused";
    const p = data.plate || body.plate || "";
    const say = () => {  // worded when shown: a language switch rewords it
      let text;
      if (status !== 200) text = at("error", { m: data.message || status });
      else if (data.outcome === "corrected") {
        text = view && view.direction === "entry" ? at("corrected_entry", { p }) :
          data.due_fen ? at("corrected_due", { p, y: yuan(data.due_fen) }) : at("corrected_free", { p });
      } else if (data.outcome === "candidates") {
        text = at("candidates", { p, l: data.candidates.map((c) => c.plate).join(" / ") });
      } else if (data.outcome === "no_match") text = at("no_match", { p });
      else if (data.outcome === "car_gone") text = at("car_gone", { m: goneText(data.message) });
      else text = at(data.outcome, { m: data.message });
      if (status === 200 && data.opened === false) text += " · " + at("not_delivered", { m: data.message });
      return text;
    };
    results.set(laneId, [say, cls, data.record_id || recordId]);  // an admit makes a new record: the result is its
    if (lanes.has(laneId)) render(lanes.get(laneId));
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("booth-form").addEventListener("submit", submitBooth);
    document.getElementById("booth-cancel").addEventListener("click", () => {
      dialog = null;
      document.getElementById("booth-dialog").close();
    });
  });
})();
