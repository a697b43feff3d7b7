// ONNX Runtime's optimise-and-dump as the smallest possible process (BENCHMARKS.md, "Whole process"): create a
// session at ORT_ENABLE_BASIC with an optimized-model path, which makes ORT write its rewritten graph, and exit.
// Built by the benchmark harness: cc -O2 -I ORT/build/native/include ort_optimize.c -L ORT/runtimes/RID/native -lonnxruntime
#include <stdio.h>
#include <onnxruntime_c_api.h>

#define CHECK(expr) do { OrtStatus *s = (expr); if (s) { fprintf(stderr, "ort_optimize: %s\n", ort->GetErrorMessage(s)); ort->ReleaseStatus(s); return 1; } } while (0)

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: ort_optimize IN.onnx OUT.onnx\n"); return 2; }
    const OrtApi *ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    OrtEnv *env; OrtSessionOptions *options; OrtSession *session;
    CHECK(ort->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "ort_optimize", &env));
    CHECK(ort->CreateSessionOptions(&options));
    CHECK(ort->SetSessionGraphOptimizationLevel(options, ORT_ENABLE_BASIC));
    CHECK(ort->SetOptimizedModelFilePath(options, argv[2]));
    CHECK(ort->CreateSession(env, argv[1], options, &session));
    ort->ReleaseSession(session);
    ort->ReleaseSessionOptions(options);
    ort->ReleaseEnv(env);
    return 0;
}
