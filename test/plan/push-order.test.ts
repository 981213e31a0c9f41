// The push-order lines (engine/push-order.ts): a turn is ready once every earlier turn of its
// repository is done, whatever order the turns finish in; lines are per repository and dropped empty.
import { describe, expect, it } from 'vitest';
import { PushOrder } from '../../src/engine/push-order.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('PushOrder', () => {
  it('lets each turn push only after every earlier one of its repository is done', async () => {
    const order = new PushOrder();
    const turns = [0, 1, 2, 3].map(() => order.enter('dst\nlib/app'));
    const other = order.enter('dst\nlib/other');
    const pushed: number[] = [];
    // The later ones are ready to push first (small images): they wait for the first (a big one).
    const pushes = [3, 2, 1].map((i) => turns[i]!.ready().then(() => (pushed.push(i), turns[i]!.done())));
    await tick();
    expect(pushed).toEqual([]);
    await turns[0]!.ready();
    pushed.push(0);
    turns[0]!.done();
    await Promise.all(pushes);
    expect(pushed).toEqual([0, 1, 2, 3]);
    await other.ready(); // another repository never waited
    other.done();
    await tick();
    expect(order.size).toBe(0);
  });

  it('a turn that ends early (failed, present) does not let later ones pass an earlier one still running', async () => {
    const order = new PushOrder();
    const [first, second, third] = [0, 1, 2].map(() => order.enter('r'));
    second!.done(); // failed before its push
    let thirdReady = false;
    void third!.ready().then(() => (thirdReady = true));
    await tick();
    expect(thirdReady).toBe(false); // the first has not pushed yet
    first!.done();
    first!.done(); // idempotent
    await tick();
    expect(thirdReady).toBe(true);
    third!.done();
    await tick();
    expect(order.size).toBe(0);
  });
});
