import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { challengeOf, safeReturn } from "./auth";
import { normaliseUserCode } from "./devicecode";
import { layers } from "./pages/PipelineGraph";
import { TargetSchema } from "./gen/sortie/deploy/v1/deploy_pb";
import { duration } from "./time";

describe("PKCE", () => {
  it("derives the S256 challenge: base64url(sha256(verifier)), unpadded", async () => {
    // printf %s "$verifier" | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d =
    expect(await challengeOf("dBjftJeZ4CVP-mJ92K3nP6gR1Wx6NqPFaFfy9ZGIqJI")).toBe("d0gLvu8xsmTBv14tMaoCm6YK3L5rzDMjMlc-C0NIgBA");
    expect(await challengeOf("a")).toBe("ypeBEsobvcr6wjGzmiPcTaeG7_gUfE5yuYB3ha_uSLs");
  });
  it("returns only to console paths after sign-in", () => {
    expect(safeReturn("/console/deployments/x?y=1")).toBe("/console/deployments/x?y=1");
    expect(safeReturn("https://evil.example/console/")).toBe("/console/");
    expect(safeReturn("//evil.example/console/")).toBe("/console/");
    expect(safeReturn("/console/callback?code=1")).toBe("/console/");
    expect(safeReturn(undefined)).toBe("/console/");
  });
});

describe("device codes", () => {
  it("normalises what people type", () => {
    expect(normaliseUserCode("abcd efgh")).toBe("ABCD-EFGH");
    expect(normaliseUserCode("ABCD-EFGH")).toBe("ABCD-EFGH");
    expect(normaliseUserCode("ab")).toBe("AB");
    expect(normaliseUserCode("abcdefghij")).toBe("ABCD-EFGH");
  });
});

describe("pipeline graph", () => {
  it("puts each target after the longest chain of its dependencies", () => {
    const t = (name: string, dependsOn: string[] = []) => create(TargetSchema, { name, dependsOn });
    const d = layers([t("prod", ["staging", "qa"]), t("qa", ["dev"]), t("dev"), t("staging", ["dev"]), t("loop", ["loop"])]);
    expect(Object.fromEntries(d)).toEqual({ dev: 0, qa: 1, staging: 1, prod: 2, loop: 0 });
  });
});

describe("durations", () => {
  it("reads as people say them", () => {
    expect(duration(5_000)).toBe("5s");
    expect(duration(250_000)).toBe("4m 10s");
    expect(duration(2 * 3600_000 + 5 * 60_000)).toBe("2h 5m");
    expect(duration(-1)).toBe("0s");
  });
});
