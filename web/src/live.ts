// The live feed: one WebSocket, reconnected with resume so the page stays live
// across network blips and server restarts.

import { token } from "./api";

export interface Update { type: "update"; device: string; seq: number; points: Record<string, { ts: number; value: unknown }[]> }
type Handler = (msg: any) => void;

export class Live {
  private ws: WebSocket | null = null;
  private lastSeq: number | null = null;
  private closed = false;
  private delay = 500;
  private request: Record<string, unknown>;

  constructor(request: Record<string, unknown>, private onMessage: Handler, private onState: (s: string) => void) {
    this.request = request;
    this.connect();
  }

  private connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/api/v1/live?token=${encodeURIComponent(token() ?? "")}`);
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 500;
      this.onState("live");
      const req = { type: "subscribe", ...this.request, ...(this.lastSeq !== null ? { since: this.lastSeq } : {}) };
      ws.send(JSON.stringify(req));
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (typeof msg.seq === "number" && (msg.type === "update" || msg.type === "subscribed")) {
        this.lastSeq = Math.max(this.lastSeq ?? 0, msg.seq);
      }
      this.onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (this.closed) return;
      this.onState(ev.code === 4001 || ev.code === 4003 ? "signed out" : "reconnecting…");
      if (ev.code === 4001 || ev.code === 4003) return;
      window.setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10_000);
    };
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
}
