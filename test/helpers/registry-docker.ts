// FERRY_TEST_DOCKER=1: the test registries run as `registry:2` containers (distribution 2.x, the same
// code as Debian's docker-registry) started with testcontainers, instead of the local binary.
// registry.ts builds the same distribution config either way and hands it to this runner, so both
// paths give the same TestRegistry and the same tests run on both. Loaded only through a dynamic
// import on that path: nothing imports testcontainers otherwise.
//
// The registry's work directory (config, htpasswd, token certificate, storage) is bind-mounted at the
// same absolute path, so every path in the config is valid inside the container, restart() keeps the
// data, and a caller-provided storageDir works as with the binary. The container runs as the test
// process's uid:gid, so the files it writes can be deleted by stop().
//
// When the tests themselves run in a container (docker-compose.test.yml), bind mounts name paths on
// the Docker host: that file mounts a host directory at the same path and points TMPDIR at it.
// Limitations (Docker path only): registry-side outgoing connections to 127.0.0.1 (a proxy.remoteurl
// or notification endpoint on the test host) do not reach the test process; the tests that need them
// run on the binary path. The pid is the container's init process as the Docker host sees it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { GenericContainer, type StartedTestContainer, Wait, getContainerRuntimeClient } from 'testcontainers';

const CONTAINER_PORT = 5000;

export const REGISTRY_IMAGE = process.env.FERRY_TEST_REGISTRY_IMAGE ?? 'registry:2';

const MAX_LOG = 64 * 1024;

/** The same surface as RegistryProcess in registry.ts. */
export class DockerRegistryProcess {
  private container: StartedTestContainer | undefined;
  private log = '';
  private containerPid: number | undefined;
  port = 0;
  hostname = '127.0.0.1';

  constructor(
    private readonly configPath: string,
    private readonly config: Record<string, unknown>,
    private readonly timeoutMs: number,
  ) {}

  get pid(): number | undefined {
    return this.container ? this.containerPid : undefined;
  }

  output(): string {
    return this.log;
  }

  async start(fixedPort?: number): Promise<void> {
    (this.config.http as { addr: string }).addr = `:${CONTAINER_PORT}`;
    writeFileSync(this.configPath, JSON.stringify(this.config, null, 2));
    this.log = '';

    const workDir = dirname(this.configPath);
    const mounts = new Set([workDir]);
    const storage = (this.config.storage as { filesystem?: { rootdirectory?: string } }).filesystem?.rootdirectory;
    if (storage && !storage.startsWith(`${workDir}/`)) {
      mkdirSync(storage, { recursive: true });
      mounts.add(storage);
    }
    const user = typeof process.getuid === 'function' ? `${process.getuid()}:${process.getgid?.() ?? process.getuid()}` : undefined;

    let container = new GenericContainer(REGISTRY_IMAGE)
      .withCommand(['serve', this.configPath])
      .withBindMounts([...mounts].map((source) => ({ source, target: source, mode: 'rw' as const })))
      .withExposedPorts(fixedPort === undefined ? CONTAINER_PORT : { container: CONTAINER_PORT, host: fixedPort })
      .withWaitStrategy(Wait.forHttp('/v2/', CONTAINER_PORT).forStatusCodeMatching((s) => s === 200 || s === 401))
      .withStartupTimeout(this.timeoutMs)
      .withLogConsumer((stream) => {
        stream.on('data', (chunk: Buffer | string) => {
          this.log += chunk.toString();
          if (this.log.length > MAX_LOG) this.log = this.log.slice(-MAX_LOG);
        });
      });
    if (user) container = container.withUser(user);

    try {
      this.container = await container.start();
    } catch (err) {
      throw new Error(`could not start ${REGISTRY_IMAGE} with testcontainers (FERRY_TEST_DOCKER=1): ${(err as Error).message}\n${this.log.trim()}`);
    }
    this.hostname = this.container.getHost();
    this.port = this.container.getMappedPort(CONTAINER_PORT);
    try {
      const client = await getContainerRuntimeClient();
      const info = await client.container.inspect(client.container.getById(this.container.getId()));
      this.containerPid = info.State.Pid || undefined;
    } catch {
      this.containerPid = undefined;
    }
  }

  async kill(): Promise<void> {
    const container = this.container;
    this.container = undefined;
    // timeout 0: SIGKILL at once, like the binary path (the filesystem driver's writes are atomic renames).
    await container?.stop({ timeout: 0 });
  }
}
